//! How much traffic, and how it arrives: the open model (a rate profile) or
//! the closed one (looping VUs), ramps as piecewise-linear [`Profile`]s, the
//! iteration count and grace, and which [`Shard`] of the run this process
//! does.

use std::time::Duration;

use super::{Cx, Overrides};
use crate::error::Error;
use crate::scenario::file::LoadSpec;

#[derive(Debug, Clone)]
pub enum Model {
    /// Iterations start at a rate, whatever the server does.
    Open {
        rate: Profile,
        max_vus: u32,
        backlog: u32,
    },
    /// VUs loop: an iteration starts when the previous one ends.
    Closed { vus: Profile, think_time: Duration },
}

#[derive(Debug, Clone)]
pub struct Load {
    pub model: Model,
    /// The whole run: the warmup and the measured phase after it.
    pub duration: Duration,
    /// Counted against the measured phase only: the warmup's iterations are
    /// extra.
    pub iterations: Option<u64>,
    pub grace: Duration,
    /// Whole seconds at the start whose iterations are the warmup: sent and
    /// verified, their numbers kept apart from the measured phase's. Zero
    /// without one. The profile starts with a flat segment this long, at the
    /// rate or VU count the measured phase starts at.
    pub warmup: Duration,
}

impl Load {
    pub fn model_name(&self) -> &'static str {
        match self.model {
            Model::Open { .. } => "open",
            Model::Closed { .. } => "closed",
        }
    }

    /// The measured phase's planned length.
    pub fn measured(&self) -> Duration {
        self.duration.saturating_sub(self.warmup)
    }

    pub fn peak_rate(&self) -> Option<f64> {
        match &self.model {
            Model::Open { rate, .. } => Some(rate.peak()),
            Model::Closed { .. } => None,
        }
    }
}

/// A piecewise-linear profile over time: iterations per second (open model)
/// or VUs (closed model).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub from: f64,
    pub to: f64,
    pub duration: Duration,
}

impl Profile {
    pub fn constant(value: f64, duration: Duration) -> Profile {
        Profile {
            segments: vec![Segment {
                from: value,
                to: value,
                duration,
            }],
        }
    }

    pub fn duration(&self) -> Duration {
        self.segments.iter().map(|s| s.duration).sum()
    }

    pub fn peak(&self) -> f64 {
        self.segments
            .iter()
            .map(|s| s.from.max(s.to))
            .fold(0.0, f64::max)
    }

    /// Starts the profile with `length` at the value it starts at, or, when
    /// that is 0 (a ramp from nothing), at its first segment's target: the
    /// warmup runs at what the measured phase begins with.
    pub fn prepend_flat(&mut self, length: Duration) {
        let first = self
            .segments
            .first()
            .map_or(0.0, |s| if s.from > 0.0 { s.from } else { s.to });
        self.segments.insert(
            0,
            Segment {
                from: first,
                to: first,
                duration: length,
            },
        );
    }

    /// The value at `t` seconds from the start (0 past the end).
    pub fn value_at(&self, t: f64) -> f64 {
        let mut start = 0.0;
        for s in &self.segments {
            let d = s.duration.as_secs_f64();
            if t < start + d {
                return s.from + (s.to - s.from) * (t - start) / d;
            }
            start += d;
        }
        0.0
    }
}

/// Which part of the work this process does when a run is split across
/// processes or machines (`--shard 2/3`, counted from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// From 0.
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {text:?}: expected I/N with 1 ≤ I ≤ N, e.g. 1/3");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (i, n): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if i == 0 || n == 0 || i > n {
            return Err(bad());
        }
        Ok(Shard {
            index: i - 1,
            count: n,
        })
    }

    /// This shard's part of a run-wide count, so the shards add up to it.
    pub fn share(&self, total: u64) -> u64 {
        let (i, n) = (u64::from(self.index), u64::from(self.count));
        total / n + u64::from(i < total % n)
    }

    pub fn label(&self) -> Option<String> {
        (self.count > 1).then(|| format!("{}/{}", self.index + 1, self.count))
    }
}

const DEFAULT_GRACE: Duration = Duration::from_secs(5);
const DEFAULT_MAX_VUS: u32 = 256;
const DEFAULT_BACKLOG: u32 = 10_000;
/// A run given only an iteration count still needs an end.
const ITERATIONS_ONLY_LIMIT: Duration = Duration::from_secs(3600);

pub(super) fn build_load(cx: &Cx<'_>, spec: &LoadSpec, ov: &Overrides) -> Result<Load, Error> {
    let usage = |m: &str| Error::Usage(m.to_string());
    let grace = match (ov.grace, &spec.grace) {
        (Some(g), _) => g,
        (None, Some(g)) => cx.duration(g)?,
        (None, None) => DEFAULT_GRACE,
    };
    let iterations = ov
        .iterations
        .or(spec.iterations.as_ref().map(|i| *i.get_ref()));
    if iterations == Some(0) {
        return Err(match &spec.iterations {
            Some(i) if ov.iterations.is_none() => {
                cx.error(i.span(), "iterations must be at least 1")
            }
            _ => usage("--iterations must be at least 1"),
        });
    }
    let warmup = match (ov.warmup, &spec.warmup) {
        (Some(w), _) => whole_seconds(w).map_err(|m| usage(&format!("--warmup: {m}")))?,
        (None, Some(w)) => whole_seconds(cx.duration(w)?).map_err(|m| cx.error(w.span(), m))?,
        (None, None) => Duration::ZERO,
    };
    let file_duration = spec.duration.as_ref().map(|d| cx.duration(d)).transpose()?;
    let duration = ov.duration.or(file_duration);

    // A rate is the open model, VUs the closed one: both at once is a
    // question, as the same pair in a file is.
    if ov.rate.is_some() && ov.vus.is_some() {
        return Err(usage(
            "--rate and --vus choose different models (open: iterations per second; closed: looping VUs); give one of them (--max-vus bounds the open model's VUs)",
        ));
    }
    // The command line picks the model outright when it names a rate or VUs.
    let open = if ov.rate.is_some() {
        true
    } else if ov.vus.is_some() {
        false
    } else {
        match &spec.model {
            Some(m) => match m.get_ref().as_str() {
                "open" => true,
                "closed" => false,
                other => {
                    return Err(cx.error(
                        m.span(),
                        format!("unknown model {other:?} (expected \"open\" or \"closed\")"),
                    ));
                }
            },
            None => {
                spec.rate.is_some()
                    || (spec.ramp.is_some() && spec.vus.is_none() && spec.start_vus.is_none())
            }
        }
    };
    let ramp = if ov.rate.is_some() || ov.vus.is_some() {
        None
    } else {
        spec.ramp.as_ref()
    };
    if let (Some(ramp), Some(_)) = (ramp, ov.duration) {
        return Err(cx.error(
            ramp.span(),
            "--duration cannot shorten a ramp; give --rate or --vus too, or edit the ramp",
        ));
    }
    let mut segments = Vec::new();
    if let Some(ramp) = ramp {
        if ramp.get_ref().is_empty() {
            return Err(cx.error(
                ramp.span(),
                "a ramp needs at least one { target, duration } stage",
            ));
        }
        let mut from = if open {
            spec.start_rate.as_ref().map_or(0.0, |r| *r.get_ref())
        } else {
            spec.start_vus
                .as_ref()
                .map_or(0.0, |v| f64::from(*v.get_ref()))
        };
        for stage in ramp.get_ref() {
            let to = *stage.target.get_ref();
            if !to.is_finite() || to < 0.0 {
                return Err(cx.error(stage.target.span(), "a ramp target must be a number ≥ 0"));
            }
            let d = cx.duration(&stage.duration)?;
            if d.is_zero() {
                return Err(cx.error(
                    stage.duration.span(),
                    "a ramp stage needs a duration above 0",
                ));
            }
            segments.push(Segment {
                from,
                to,
                duration: d,
            });
            from = to;
        }
    }

    let run_for = |segments: &Vec<Segment>| -> Duration {
        if !segments.is_empty() {
            segments.iter().map(|s| s.duration).sum()
        } else {
            duration.unwrap_or(ITERATIONS_ONLY_LIMIT)
        }
    };
    let model = if open {
        if let (Some(vus), false) = (&spec.vus, ov.rate.is_some()) {
            return Err(cx.error(
                vus.span(),
                "`vus` belongs to the closed model; the open model takes `rate` and `max_vus`",
            ));
        }
        let rate_profile = if segments.is_empty() {
            let rate = match (ov.rate, &spec.rate) {
                (Some(r), _) => r,
                (None, Some(r)) => *r.get_ref(),
                (None, None) => {
                    return Err(usage(
                        "the open model needs load.rate or load.ramp (or --rate)",
                    ));
                }
            };
            if !rate.is_finite() || rate <= 0.0 {
                return Err(match (&spec.rate, ov.rate) {
                    (Some(r), None) => cx.error(r.span(), "rate must be above 0"),
                    _ => usage("--rate must be above 0"),
                });
            }
            if duration.is_none() && iterations.is_none() {
                return Err(usage(
                    "the open model needs load.duration (or --duration) or load.iterations",
                ));
            }
            Profile::constant(rate, run_for(&segments))
        } else {
            Profile {
                segments: segments.clone(),
            }
        };
        let max_vus = ov
            .max_vus
            .or(spec.max_vus.as_ref().map(|v| *v.get_ref()))
            .unwrap_or(DEFAULT_MAX_VUS)
            .max(1);
        let backlog = spec
            .backlog
            .as_ref()
            .map_or(DEFAULT_BACKLOG, |b| *b.get_ref());
        Model::Open {
            rate: rate_profile,
            max_vus,
            backlog,
        }
    } else {
        if let (Some(rate), false) = (&spec.rate, ov.vus.is_some()) {
            return Err(cx.error(
                rate.span(),
                "`rate` belongs to the open model; set model = \"open\" or use `vus`",
            ));
        }
        let vus_profile = if segments.is_empty() {
            let vus = ov
                .vus
                .or(spec.vus.as_ref().map(|v| *v.get_ref()))
                .unwrap_or(1);
            if vus == 0 {
                return Err(usage("vus must be at least 1"));
            }
            // With neither a duration nor a count, a scenario is a smoke test: one pass.
            let smoke = duration.is_none() && iterations.is_none();
            let length = if smoke {
                ITERATIONS_ONLY_LIMIT
            } else {
                run_for(&segments)
            };
            Profile::constant(f64::from(vus), length)
        } else {
            Profile {
                segments: segments.clone(),
            }
        };
        let think_time = spec
            .think_time
            .as_ref()
            .map(|t| cx.duration(t))
            .transpose()?
            .unwrap_or_default();
        Model::Closed {
            vus: vus_profile,
            think_time,
        }
    };
    let smoke = !open && duration.is_none() && iterations.is_none() && segments.is_empty();
    let iterations = if smoke { Some(1) } else { iterations };
    let mut model = model;
    if !warmup.is_zero() {
        match &mut model {
            Model::Open { rate: profile, .. } | Model::Closed { vus: profile, .. } => {
                profile.prepend_flat(warmup)
            }
        }
    }
    let total = match &model {
        Model::Open { rate, .. } => rate.duration(),
        Model::Closed { vus, .. } => vus.duration(),
    };
    Ok(Load {
        model,
        duration: total,
        iterations,
        grace,
        warmup,
    })
}

/// The warmup is a number of the engine's one-second ticks, so that every
/// second's numbers belong to one phase.
fn whole_seconds(d: Duration) -> Result<Duration, String> {
    if d.subsec_nanos() == 0 {
        Ok(d)
    } else {
        Err(format!(
            "a warmup is counted in whole seconds ({} is not); e.g. \"30s\"",
            humantime::format_duration(d)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles() {
        let p = Profile {
            segments: vec![Segment {
                from: 0.0,
                to: 100.0,
                duration: Duration::from_secs(10),
            }],
        };
        assert_eq!(p.value_at(5.0), 50.0);
        assert_eq!(p.value_at(11.0), 0.0);
        assert_eq!(p.peak(), 100.0);
    }

    #[test]
    fn a_warmup_leads_the_profile_at_the_rate_it_starts_with() {
        let mut p = Profile {
            segments: vec![Segment {
                from: 0.0,
                to: 100.0,
                duration: Duration::from_secs(10),
            }],
        };
        p.prepend_flat(Duration::from_secs(3));
        assert_eq!(p.duration(), Duration::from_secs(13));
        // A ramp from nothing warms up at its first target.
        assert_eq!(p.value_at(1.0), 100.0);
        assert_eq!(p.value_at(3.0), 0.0);
        let mut flat = Profile::constant(20.0, Duration::from_secs(5));
        flat.prepend_flat(Duration::from_secs(2));
        assert_eq!(flat.value_at(0.5), 20.0);
        assert_eq!(flat.duration(), Duration::from_secs(7));
        assert!(whole_seconds(Duration::from_millis(1500)).is_err());
        assert_eq!(
            whole_seconds(Duration::from_secs(30)),
            Ok(Duration::from_secs(30))
        );
    }

    #[test]
    fn shards_count_from_one() {
        assert_eq!(Shard::parse("1/3").unwrap(), Shard { index: 0, count: 3 });
        assert!(Shard::parse("0/3").is_err());
        assert!(Shard::parse("4/3").is_err());
        assert!(Shard::parse("x").is_err());
        let shards = [
            Shard { index: 0, count: 3 },
            Shard { index: 1, count: 3 },
            Shard { index: 2, count: 3 },
        ];
        assert_eq!(shards.map(|s| s.share(10)), [4, 3, 3]);
    }
}
