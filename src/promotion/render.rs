//! A promotion in every format, from the one [`Promotion`] document: the
//! terminal lines, Markdown (with each smoke's own summary), JUnit (one case
//! per step) and a self-contained HTML page.

use std::fmt::Write as _;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::Promotion;
use crate::report::html::escape;
use crate::summary::Summary;

fn ids(map: &std::collections::BTreeMap<String, Option<String>>) -> String {
    map.iter()
        .map(|(s, id)| format!("{s} {}", id.as_deref().unwrap_or("(none)")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn smoke_line(label: &str, s: &Summary) -> String {
    format!(
        "{label}: {} on stage {} ({} request{}, {} failed{})",
        if s.passed && !s.partial {
            "passed"
        } else {
            "FAILED"
        },
        s.stage,
        s.totals.requests,
        if s.totals.requests == 1 { "" } else { "s" },
        s.totals.failed,
        s.deployment
            .as_ref()
            .and_then(|d| d.deployment_id.as_deref())
            .map(|d| format!(", deployment {d}"))
            .unwrap_or_default()
    )
}

fn canary_line(c: &super::CanaryReport) -> String {
    format!(
        "canary {}% → {}: {} — {:.1}% of {} requests (bounds {:.1}–{:.1}%), canary p99 {:.1} ms / {} failed, primary p99 {:.1} ms / {} failed",
        c.percent,
        c.deployment_id,
        if c.passed { "passed" } else { "FAILED" },
        c.share,
        c.canary.requests + c.primary.requests,
        c.share_bounds.0,
        c.share_bounds.1,
        c.canary.latency_ms.p99,
        c.canary.failed,
        c.primary.latency_ms.p99,
        c.primary.failed
    )
}

pub fn terminal(p: &Promotion) -> String {
    let j = &p.journal;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} of REST API {} ({}): {} → {}",
        j.kind,
        j.rest_api_name,
        j.rest_api_id,
        j.from_stage.as_deref().unwrap_or("history"),
        j.to_stage
    );
    for step in &j.steps {
        let _ = writeln!(out, "  {}  {:<12} {}", step.at, step.name, step.detail);
    }
    if let Some(g) = &p.gate {
        let _ = writeln!(
            out,
            "gate: {} ({}{})",
            if g.passed { "passed" } else { "refused" },
            g.kind,
            g.evidence_file
                .as_deref()
                .map(|f| format!(" {f}"))
                .unwrap_or_default()
        );
    }
    if let Some(s) = &p.smoke {
        let _ = writeln!(out, "{}", smoke_line("smoke", s));
    }
    if let Some(s) = &p.rollback_smoke {
        let _ = writeln!(out, "{}", smoke_line("smoke after rollback", s));
    }
    if let Some(c) = &p.canary {
        let _ = writeln!(out, "{}", canary_line(c));
        for j in &c.rules {
            let _ = writeln!(
                out,
                "  {} {} ({:.2} against {:.2})",
                if j.ok { "ok  " } else { "FAIL" },
                j.rule,
                j.canary,
                j.limit
            );
        }
    }
    let _ = writeln!(out, "before: {}", ids(&p.before));
    let _ = writeln!(out, "after:  {}", ids(&p.after));
    let t = &p.timings;
    let _ = writeln!(
        out,
        "time: audit {:.1}s, gate {:.1}s, switch {:.1}s, propagation {:.1}s, smoke {:.1}s{}",
        t.audit_s,
        t.gate_s,
        t.switch_s,
        t.propagation_s,
        t.smoke_s,
        t.rollback_s
            .map(|r| format!(", rollback {r:.1}s"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "{}: {}{}",
        if p.passed { "PASS" } else { "FAIL" },
        p.outcome,
        p.reason
            .as_deref()
            .map(|r| format!(" — {r}"))
            .unwrap_or_default()
    );
    out
}

pub fn markdown(p: &Promotion) -> String {
    let j = &p.journal;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## stagecheck {}: {} → {} — {}\n",
        j.kind,
        j.from_stage.as_deref().unwrap_or("history"),
        j.to_stage,
        if p.passed {
            p.outcome.clone()
        } else {
            format!("**{}**", p.outcome)
        }
    );
    if let Some(r) = &p.reason {
        let _ = writeln!(out, "{r}\n");
    }
    let _ = writeln!(out, "| stage | before | after |\n|---|---|---|");
    for (stage, before) in &p.before {
        let after = p.after.get(stage).cloned().flatten();
        let _ = writeln!(
            out,
            "| {stage} | {} | {} |",
            before.as_deref().unwrap_or(""),
            after.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(out, "\n| step | at | detail |\n|---|---|---|");
    for s in &j.steps {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            s.name,
            s.at,
            s.detail.replace('|', "\\|")
        );
    }
    if let Some(c) = &p.canary {
        let _ = writeln!(out, "\n{}\n", canary_line(c));
        for r in &c.rules {
            let _ = writeln!(
                out,
                "- {} `{}`: {:.2} against {:.2}",
                if r.ok { "ok" } else { "**failed**" },
                r.rule,
                r.canary,
                r.limit
            );
        }
    }
    for (label, s) in [
        ("Gate run", p.gate.as_ref().and_then(|g| g.run.as_deref())),
        ("Smoke", p.smoke.as_deref()),
        ("Smoke after rollback", p.rollback_smoke.as_deref()),
    ] {
        if let Some(s) = s {
            let _ = writeln!(
                out,
                "\n### {label}\n\n{}",
                crate::report::markdown::render(s)
            );
        }
    }
    out
}

/// One test case per journaled step, plus the gate and each smoke.
pub fn junit(p: &Promotion) -> String {
    let j = &p.journal;
    let mut report = Report::new(format!("stagecheck {}", j.kind));
    let mut suite = TestSuite::new(format!("{} {}", j.kind, j.to_stage));
    let case = |name: String, failure: Option<String>| {
        let status = match failure {
            Some(message) => {
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(message);
                s
            }
            None => TestCaseStatus::success(),
        };
        let mut c = TestCase::new(name, status);
        c.set_classname(format!("stagecheck.{}.{}", j.kind, j.to_stage));
        c
    };
    if let Some(g) = &p.gate {
        suite.add_test_case(case(
            "gate".into(),
            (!g.passed).then(|| {
                g.refused
                    .clone()
                    .unwrap_or_else(|| "the gate failed".into())
            }),
        ));
    }
    for s in &j.steps {
        suite.add_test_case(case(format!("{}: {}", s.name, s.detail), None));
    }
    for (label, s) in [
        ("smoke", p.smoke.as_deref()),
        ("smoke after rollback", p.rollback_smoke.as_deref()),
    ] {
        if let Some(s) = s {
            suite.add_test_case(case(
                format!("{label} on {}", s.stage),
                (!s.passed || s.partial).then(|| smoke_line(label, s)),
            ));
        }
    }
    suite.add_test_case(case(
        format!("{} {}", j.kind, p.outcome),
        (!p.passed).then(|| p.reason.clone().unwrap_or_else(|| p.outcome.clone())),
    ));
    report.add_test_suite(suite);
    report
        .to_string()
        .unwrap_or_else(|e| format!("<!-- cannot write JUnit: {e} -->\n"))
}

pub fn html(p: &Promotion) -> String {
    let mut body = String::new();
    for line in terminal(p).lines() {
        let _ = writeln!(body, "{}", escape(line));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>stagecheck {}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2em}}pre{{background:#f6f8fa;padding:1em}}\
         .pass{{color:#1a7f37}}.fail{{color:#cf222e}}</style></head><body>\
         <h1 class=\"{}\">stagecheck {}: {}</h1><pre>{body}</pre></body></html>\n",
        escape(&p.journal.kind),
        if p.passed { "pass" } else { "fail" },
        escape(&p.journal.kind),
        escape(&p.outcome)
    )
}
