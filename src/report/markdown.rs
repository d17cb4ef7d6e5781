//! A compact Markdown summary for pull requests and GitHub's job page: the
//! verdict, what failed, and the per-step table. User text is escaped so a
//! step name or a response body cannot break the table or inject markup.

use std::fmt::Write as _;

use crate::report::terminal::fmt_ms;
use crate::summary::Summary;

pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    let t = &summary.totals;
    let verdict = if summary.partial {
        "⚠️ PARTIAL"
    } else if summary.passed {
        "✅ PASS"
    } else {
        "❌ FAIL"
    };
    let _ = writeln!(
        out,
        "### {verdict}: stagecheck {} on stage {}\n",
        escape(&summary.scenario),
        escape(&summary.stage)
    );
    let mut facts = format!(
        "{} requests in {:.1}s ({:.1}/s), {} failed, {} dropped iterations · {} · started {} · run {}",
        t.requests,
        summary.duration_s,
        t.rps,
        t.failed,
        t.dropped_iterations,
        escape(&summary.base_url),
        escape(&summary.started_at),
        escape(&summary.run_id),
    );
    if let Some(shard) = &summary.shard {
        let _ = write!(facts, " · shard {}", escape(shard));
    }
    if !summary.merged_from.is_empty() {
        let _ = write!(facts, " · merged from {} runs", summary.merged_from.len());
    }
    let _ = writeln!(out, "{facts}\n");
    if let Some(why) = &summary.stopped_by {
        let _ = writeln!(out, "Stopped early: {}\n", escape(why));
    }
    for reason in summary
        .reasons
        .iter()
        .filter(|r| !r.starts_with("the run did not finish"))
    {
        let _ = writeln!(out, "Not passed: {}\n", escape(reason));
    }
    if let Some(note) = summary.throttling_note() {
        let _ = writeln!(out, "> **Throttling:** {}\n", escape(&note));
    }
    if let Some(warmup) = &summary.warmup {
        let _ = writeln!(out, "{}\n", escape(&warmup.sentence()));
    }

    if let Some(v) = &summary.verify {
        let _ = writeln!(
            out,
            "**Verification of stage {}**\n",
            escape(&summary.stage)
        );
        for f in v.findings(&summary.stage) {
            let _ = writeln!(
                out,
                "- {} {}: {}",
                if f.ok { "✅" } else { "❌" },
                escape(&f.name),
                escape(&f.message)
            );
        }
        out.push('\n');
    }
    let failed: Vec<_> = summary.failed_thresholds().collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "**Failed thresholds**\n");
        for th in failed {
            let actual = th
                .actual
                .map(|a| {
                    format!(
                        " (actual {})",
                        crate::thresholds::format_actual(&th.expr, a)
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(out, "- {}{actual}", escape(&th.expr));
        }
        out.push('\n');
    }
    let failed_checks: Vec<_> = summary
        .checks
        .details
        .iter()
        .filter(|c| c.failed > 0)
        .collect();
    if !failed_checks.is_empty() {
        let _ = writeln!(out, "**Failed checks**\n");
        for c in failed_checks {
            let example = c
                .example_failure
                .as_deref()
                .map(|e| format!(", e.g. {}", escape(e)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "- {}: {}: {} of {} failed{example}",
                escape(&c.step),
                escape(&c.name),
                c.failed,
                c.passed + c.failed
            );
        }
        out.push('\n');
    }

    out.push_str("| step | requests | rps | failed | p50 | p90 | p99 | max | status |\n");
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for s in &summary.steps {
        let mut status: Vec<String> = s
            .status
            .iter()
            .map(|(code, n)| format!("{}×{n}", escape(code)))
            .collect();
        if s.errors.total() > 0 {
            status.push(format!("errors×{}", s.errors.total()));
        }
        let _ = writeln!(
            out,
            "| {} {} | {} | {:.1} | {} | {} | {} | {} | {} | {} |",
            escape(&s.method),
            escape(&s.name),
            s.requests,
            s.rps,
            s.failed,
            fmt_ms(s.latency_ms.p50),
            fmt_ms(s.latency_ms.p90),
            fmt_ms(s.latency_ms.p99),
            fmt_ms(s.latency_ms.max),
            status.join(" ")
        );
    }
    let l = &t.latency_ms;
    let _ = writeln!(
        out,
        "| **all** | {} | {:.1} | {} | {} | {} | {} | {} | |",
        t.requests,
        t.rps,
        t.failed,
        fmt_ms(l.p50),
        fmt_ms(l.p90),
        fmt_ms(l.p99),
        fmt_ms(l.max)
    );

    if !summary.thresholds.is_empty() || !summary.checks.details.is_empty() {
        let _ = writeln!(
            out,
            "\n<details><summary>{} thresholds, {} checks ({} passed, {} failed)</summary>\n",
            summary.thresholds.len(),
            summary.checks.details.len(),
            summary.checks.passed,
            summary.checks.failed
        );
        for th in &summary.thresholds {
            let _ = writeln!(
                out,
                "- {} {}{}",
                if th.ok { "✅" } else { "❌" },
                escape(&th.expr),
                th.actual
                    .map(|a| format!(
                        " (actual {})",
                        crate::thresholds::format_actual(&th.expr, a)
                    ))
                    .unwrap_or_default()
            );
        }
        for c in &summary.checks.details {
            if !c.ran() {
                // 0/0 is not a pass: the check never saw an answer.
                let _ = writeln!(
                    out,
                    "- ❌ {}: {} (not run)",
                    escape(&c.step),
                    escape(&c.name)
                );
                continue;
            }
            let _ = writeln!(
                out,
                "- {} {}: {} ({}/{})",
                if c.failed == 0 { "✅" } else { "❌" },
                escape(&c.step),
                escape(&c.name),
                c.passed,
                c.passed + c.failed
            );
        }
        out.push_str("\n</details>\n");
    }
    out
}

/// Markdown punctuation gets a backslash; `<`, `>` and `&` become entities
/// (GitHub drops unknown tags); line breaks become spaces so a table row
/// stays one row.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' | '\r' | '\t' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '~' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn user_text_cannot_break_a_table_or_add_markup() {
        assert_eq!(
            escape("a|b <img src=x> *c*\nd"),
            "a\\|b &lt;img src=x&gt; \\*c\\* d"
        );
    }
}
