//! Live progress during a run, drawn from the coordinator's once-a-second
//! [`Progress`] (workers never print): a bar on a terminal, plain periodic
//! lines when stderr is a pipe or a CI log, nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::Progress;
use crate::report::terminal::{fmt_ms, progress_line};

pub struct LiveProgress {
    display: Display,
}

enum Display {
    Quiet,
    /// One line a second: logs keep every line, and nothing needs a cursor.
    Lines,
    Bar(ProgressBar),
}

impl LiveProgress {
    /// `total`: how long the run sends traffic.
    pub fn new(quiet: bool, total: Duration) -> LiveProgress {
        let display = if quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal()
            && std::env::var_os("TERM").is_none_or(|t| t != "dumb")
        {
            Display::Bar(bar(total))
        } else {
            Display::Lines
        };
        LiveProgress { display }
    }

    pub fn update(&mut self, p: &Progress) {
        match &self.display {
            Display::Quiet => {}
            Display::Lines => eprintln!("{}", progress_line(p)),
            Display::Bar(bar) => {
                bar.set_position(p.elapsed.as_secs().min(p.total.as_secs()));
                bar.set_message(bar_message(p));
            }
        }
    }

    /// Clears the bar so the report starts on a clean line.
    pub fn finish(&mut self) {
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
        }
    }
}

fn bar(total: Duration) -> ProgressBar {
    let color = std::env::var_os("NO_COLOR").is_none();
    let template = if color {
        "  {bar:30.cyan/blue} {pos:>4}/{len}s  {msg}"
    } else {
        "  {bar:30} {pos:>4}/{len}s  {msg}"
    };
    // The template is a constant; fall back to the default bar rather than fail a run.
    let style = ProgressStyle::with_template(template)
        .map(|s| s.progress_chars("█▉▊▋▌▍▎▏ "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let bar = ProgressBar::with_draw_target(
        Some(total.as_secs().max(1)),
        ProgressDrawTarget::stderr_with_hz(4),
    );
    bar.set_style(style);
    bar
}

/// What the bar shows beside itself: this second's rate and p99, the run's errors and drops.
pub fn bar_message(p: &Progress) -> String {
    format!(
        "{}{} req/s  p99 {}  requests {}  errors {}  dropped {}",
        if p.warming_up { "warmup  " } else { "" },
        p.second.requests,
        fmt_ms(p.second.p99_ms),
        p.requests,
        p.failed,
        p.dropped_iterations
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::TimelinePoint;

    #[test]
    fn the_bar_names_rate_p99_errors_and_drops() {
        let p = Progress {
            elapsed: Duration::from_secs(3),
            total: Duration::from_secs(10),
            warming_up: false,
            second: TimelinePoint {
                width_s: 1,
                t: 2,
                requests: 50,
                errors: 1,
                p50_ms: 1.0,
                p99_ms: 12.5,
                steps: Vec::new(),
                histogram: None,
            },
            requests: 150,
            failed: 2,
            dropped_iterations: 0,
        };
        assert_eq!(
            bar_message(&p),
            "50 req/s  p99 12.5ms  requests 150  errors 2  dropped 0"
        );
    }
}
