//! Durations and times as users write them (`30s`, `2m`, RFC 3339, `+30s`): a
//! leaf that the command line and the scenario file both parse with.

/// `--start-at`: an RFC 3339 time, or `+D` (a duration) from now.
pub fn parse_start_at(s: &str) -> Result<std::time::SystemTime, String> {
    let s = s.trim();
    if let Some(after) = s.strip_prefix('+') {
        return parse_duration(after).map(|d| std::time::SystemTime::now() + d);
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(std::time::SystemTime::from)
        .map_err(|e| {
            format!("invalid time {s:?}: {e} (use RFC 3339, e.g. 2026-12-01T22:00:00Z, or +30s from now)")
        })
}

/// Durations as users write them elsewhere: `250ms`, `30s`, `2m`, `1h 30m`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (use e.g. 500ms, 30s, 2m)"))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn durations_as_users_write_them() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 1h 30m "), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").unwrap_err().contains("use e.g."));
        assert!(parse_duration("10").is_err(), "a bare number is ambiguous");
    }

    #[test]
    fn start_times_as_rfc_3339_or_from_now() {
        use std::time::{SystemTime, UNIX_EPOCH};
        let at = super::parse_start_at("2026-12-01T22:00:00Z").unwrap();
        assert_eq!(
            at.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_796_162_400
        );
        let soon = super::parse_start_at("+30s").unwrap();
        let ahead = soon.duration_since(SystemTime::now()).unwrap();
        assert!(ahead > Duration::from_secs(29) && ahead <= Duration::from_secs(30));
        assert!(
            super::parse_start_at("tomorrow")
                .unwrap_err()
                .contains("RFC 3339")
        );
    }

    proptest! {
        #[test]
        fn every_unit_round_trips(n in 0u64..100_000, unit in 0usize..4) {
            let (suffix, scale) = [("ms", 1u64), ("s", 1000), ("m", 60_000), ("h", 3_600_000)][unit];
            prop_assert_eq!(parse_duration(&format!("{n}{suffix}")), Ok(Duration::from_millis(n * scale)));
        }

        #[test]
        fn never_panics(text in any::<String>()) {
            let _ = parse_duration(&text);
        }
    }
}
