//! The guards that refuse a run before it starts: a protected stage takes
//! only a smoke run unless `--allow-prod`, and `--max-rate` refuses a run
//! that could send more requests per second than the cap.

use super::{Load, Model, Overrides, Stage};
use crate::error::Error;

/// A protected stage (`protected = true`, normally Prod) takes a smoke run —
/// one iteration — unless `--allow-prod` says the load is meant.
pub(super) fn guard_protected(stage: &Stage, load: &Load, ov: &Overrides) -> Result<(), Error> {
    // A warmup is traffic of its own: with one, a single iteration is no smoke run.
    let smoke = load.iterations == Some(1) && load.warmup.is_zero();
    if !stage.protected || ov.allow_prod || smoke {
        return Ok(());
    }
    let what = match (load.iterations, &load.model) {
        (Some(n), _) if !load.warmup.is_zero() => format!(
            "a {} warmup and {n} iterations",
            humantime::format_duration(load.warmup)
        ),
        (Some(n), _) => format!("{n} iterations"),
        (None, Model::Open { rate, .. }) => format!(
            "traffic for {} at up to {} iterations/s",
            humantime::format_duration(load.duration),
            rate.peak()
        ),
        (None, Model::Closed { vus, .. }) => format!(
            "traffic for {} with up to {} VUs",
            humantime::format_duration(load.duration),
            vus.peak().ceil()
        ),
    };
    Err(Error::Usage(format!(
        "stage `{}` is protected: this run would send {what}, and a protected stage only takes a smoke run (one iteration). Pass --allow-prod to send this load anyway, or --iterations 1 for a smoke run",
        stage.name
    )))
}

/// The most requests per second the run could send: the peak iteration rate
/// times the requests per iteration, and never more than its iterations'
/// requests in total. `None`: no bound (looping VUs without think time).
pub fn peak_request_rate(load: &Load, requests_per_iteration: usize) -> Option<f64> {
    let per = requests_per_iteration as f64;
    let by_rate = match &load.model {
        Model::Open { rate, .. } => Some(rate.peak() * per),
        Model::Closed { vus, think_time } if !think_time.is_zero() => {
            Some(vus.peak() * per / think_time.as_secs_f64())
        }
        Model::Closed { .. } => None,
    };
    let by_count = load.iterations.map(|n| n as f64 * per);
    match (by_rate, by_count) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `--max-rate`: a run that could exceed the cap is refused before it starts,
/// rather than clamped, so what runs is what the scenario says.
pub(super) fn guard_max_rate(
    cap: f64,
    load: &Load,
    requests_per_iteration: usize,
) -> Result<(), Error> {
    if !cap.is_finite() || cap <= 0.0 {
        return Err(Error::Usage("--max-rate must be above 0".into()));
    }
    match peak_request_rate(load, requests_per_iteration) {
        Some(peak) if peak <= cap => Ok(()),
        Some(peak) => Err(Error::Usage(format!(
            "--max-rate {cap}: this run could send up to {peak} requests/s ({requests_per_iteration} per iteration); lower the rate or raise --max-rate"
        ))),
        None => Err(Error::Usage(format!(
            "--max-rate {cap}: looping VUs without think_time have no rate bound; use the open model (--rate) or set load.think_time"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::tests::{MINIMAL, plan};
    use super::super::{Overrides, parse};
    use crate::error::Error;

    const PROD: &str = "[target]\nbase_url = \"http://127.0.0.1:9/{stage}\"\nstage = \"prod\"\n\n[[stages]]\nname = \"prod\"\nprotected = true\n\n[load]\nrate = 5\nduration = \"10s\"\n\n[[steps]]\nname = \"a\"\nmethod = \"GET\"\npath = \"/user\"\n[[steps]]\nname = \"b\"\nmethod = \"GET\"\npath = \"/user\"\n";

    #[test]
    fn protected_stages_take_a_smoke_run_unless_allowed() {
        let refused = plan(PROD).unwrap_err();
        assert!(matches!(refused, Error::Usage(_)));
        let text = refused.to_string();
        assert!(
            text.contains("protected") && text.contains("--allow-prod"),
            "{text}"
        );
        let allowed = Overrides {
            allow_prod: true,
            ..Overrides::default()
        };
        assert!(parse(Path::new("t.toml"), PROD, &allowed).is_ok());
        let smoke = Overrides {
            iterations: Some(1),
            ..Overrides::default()
        };
        assert!(parse(Path::new("t.toml"), PROD, &smoke).is_ok());
        // A warmup is traffic too: one iteration after it is no smoke run.
        let warmed = Overrides {
            iterations: Some(1),
            warmup: Some(std::time::Duration::from_secs(30)),
            ..Overrides::default()
        };
        let text = parse(Path::new("t.toml"), PROD, &warmed)
            .unwrap_err()
            .to_string();
        assert!(text.contains("a 30s warmup and 1 iterations"), "{text}");
        let validate = Overrides {
            validate_only: true,
            ..Overrides::default()
        };
        assert!(parse(Path::new("t.toml"), PROD, &validate).is_ok());
    }

    #[test]
    fn max_rate_counts_requests_of_every_step() {
        let with_cap = |cap: f64| Overrides {
            allow_prod: true,
            max_rate: Some(cap),
            ..Overrides::default()
        };
        // 5 iterations/s × 2 steps = 10 requests/s.
        assert!(parse(Path::new("t.toml"), PROD, &with_cap(10.0)).is_ok());
        let refused = parse(Path::new("t.toml"), PROD, &with_cap(9.0)).unwrap_err();
        assert!(
            refused.to_string().contains("up to 10 requests/s"),
            "{refused}"
        );
        let closed = MINIMAL.replace(
            "[[steps]]",
            "[load]\nvus = 2\nduration = \"5s\"\n\n[[steps]]",
        );
        let refused = parse(Path::new("t.toml"), &closed, &with_cap(100.0)).unwrap_err();
        assert!(refused.to_string().contains("no rate bound"), "{refused}");
    }
}
