//! The audit in every format, all from the one [`Audit`] document: the
//! terminal tree (stage → variables → route → function → table; role →
//! tables it may touch; permission), Markdown, JUnit (one test case per
//! stage and check) and HTML (each stage's chain as an inline SVG graph,
//! the failing links marked).

use std::fmt::Write as _;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use super::{Audit, CODES, Finding, Severity};
use crate::deployment::{Function, StageView};
use crate::report::html::escape;

fn paint(color: bool, code: &str, text: &str) -> String {
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn severity_label(color: bool, s: Severity) -> String {
    match s {
        Severity::Error => paint(color, "1;31", "error"),
        Severity::Warning => paint(color, "33", "warning"),
        Severity::Info => paint(color, "2", "info"),
    }
}

/// Whether a finding of one of `codes` is an error on this stage and resource.
fn failing(audit: &Audit, stage: &str, resource: &str, codes: &[&str]) -> bool {
    audit.findings.iter().any(|f| {
        f.severity == Severity::Error
            && f.stage == stage
            && f.resource == resource
            && codes.contains(&f.code.as_str())
    })
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// The terminal report: one tree per stage, then the findings and the verdict.
pub fn terminal(audit: &Audit, color: bool) -> String {
    let d = &audit.deployment;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "REST API {} ({}), {}",
        d.rest_api.name, d.rest_api.id, d.region
    );
    for note in &d.notes {
        let _ = writeln!(out, "{} {note}", paint(color, "2", "note:"));
    }
    for stage in &d.stages {
        out.push('\n');
        stage_tree(audit, stage, color, &mut out);
    }
    out.push('\n');
    if audit.findings.is_empty() {
        let _ = writeln!(out, "no findings");
    }
    for f in &audit.findings {
        let _ = writeln!(
            out,
            "{} [{}] {}: {}",
            severity_label(color, f.severity),
            f.code,
            f.stage,
            f.message
        );
    }
    let verdict = if audit.passed() {
        paint(color, "1;32", "PASS")
    } else {
        paint(color, "1;31", "FAIL")
    };
    let _ = writeln!(
        out,
        "\n{verdict}: {} error(s), {} warning(s), {} note(s) on {} stage(s)",
        audit.counts.error,
        audit.counts.warning,
        audit.counts.info,
        audit.stages.len()
    );
    out
}

fn stage_tree(audit: &Audit, stage: &StageView, color: bool, out: &mut String) {
    let d = &audit.deployment;
    let s = &stage.name;
    let mut header = format!(
        "stage {}  deployment {}  logging {}",
        paint(color, "1", s),
        stage.deployment_id.as_deref().unwrap_or("(none)"),
        stage.logging.level
    );
    if let Some(c) = &stage.canary {
        let _ = write!(
            header,
            "  canary {}% → {}",
            crate::report::number(c.percent_traffic),
            c.deployment_id.as_deref().unwrap_or("?")
        );
    }
    let _ = writeln!(out, "{header}");
    let vars = if stage.variables.is_empty() {
        "(none)".to_string()
    } else {
        stage
            .variables
            .iter()
            .map(|(k, v)| format!("{k} = {v:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "├── variables: {vars}");
    for route in &stage.routes {
        let target = match (&route.function, &route.resolved_uri) {
            (Some(f), _) => f.name.clone(),
            (None, Some(uri)) => uri.clone(),
            (None, None) => "(no integration)".into(),
        };
        let bad = !route.unset_variables.is_empty();
        let arrow = format!("{} → {target}", route.route.label());
        let _ = writeln!(
            out,
            "├── {}{}",
            if bad {
                paint(color, "31", &arrow)
            } else {
                arrow
            },
            if bad {
                format!("  (unset: {})", route.unset_variables.join(", "))
            } else {
                String::new()
            }
        );
    }
    let arns = stage.function_arns();
    for (i, arn) in arns.iter().enumerate() {
        let last = i + 1 == arns.len();
        let (branch, pad) = if last {
            ("└──", "    ")
        } else {
            ("├──", "│   ")
        };
        let Some(f) = d.function(arn) else { continue };
        function_tree(audit, s, f, branch, pad, color, out);
    }
    if arns.is_empty() {
        let _ = writeln!(out, "└── (no Lambda function)");
    }
}

fn function_tree(
    audit: &Audit,
    stage: &str,
    f: &Function,
    branch: &str,
    pad: &str,
    color: bool,
    out: &mut String,
) {
    let d = &audit.deployment;
    if !f.found {
        let _ = writeln!(
            out,
            "{branch} {}",
            paint(color, "31", &format!("function {} (not found)", f.name))
        );
        return;
    }
    let env = match f.environment_text().as_str() {
        "(unset)" => "environment (unset)".to_string(),
        text => text.to_string(),
    };
    let name = if failing(audit, stage, &f.arn, &["shared-function"]) {
        paint(color, "31", &format!("function {}", f.name))
    } else {
        format!("function {}", f.name)
    };
    let _ = writeln!(
        out,
        "{branch} {name}  {env}  code {}",
        f.code_sha256.as_deref().map_or("?", short)
    );
    let mut lines = Vec::new();
    if let Some(table) = &f.table {
        let t = d.table(table);
        let bad = t.is_some_and(|t| !t.exists || failing(audit, stage, &t.arn, &["shared-table"]));
        let text = format!(
            "table {table}{}",
            if t.is_some_and(|t| !t.exists) {
                " (not found)"
            } else {
                ""
            }
        );
        lines.push(if bad { paint(color, "31", &text) } else { text });
    }
    let role = f.role.as_deref().unwrap_or("(none)");
    let role_name = role.rsplit('/').next().unwrap_or(role);
    let role_bad = failing(
        audit,
        stage,
        role,
        &["role-allows-other-stage-table", "role-denies-own-table"],
    );
    let mut reach: Vec<String> = Vec::new();
    for a in f.access.iter().filter(|a| !a.allowed.is_empty()) {
        let own = f.table.as_deref() == Some(a.table.as_str());
        let text = format!("{} ({})", a.table, a.allowed.len());
        reach.push(if own {
            text
        } else {
            paint(color, "1;31", &text)
        });
    }
    let decided = f.access.first().map_or("", |a| a.decided_by.as_str());
    let role_text = format!(
        "role {role_name} may touch: {}{}",
        if reach.is_empty() {
            "no table".to_string()
        } else {
            reach.join(", ")
        },
        if decided.is_empty() {
            String::new()
        } else {
            format!("  [{decided}]")
        }
    );
    lines.push(if role_bad && !color {
        format!("{role_text}  ✗")
    } else {
        role_text
    });
    let permission = if f.invoke_permissions.is_empty() {
        paint(color, "31", "permission: none for API Gateway")
    } else {
        let text = format!(
            "permission: {}",
            f.invoke_permissions
                .iter()
                .map(|p| p.source_arn.as_deref().unwrap_or("any source"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if failing(audit, stage, &f.arn, &["source-arn-mismatch"]) {
            paint(color, "31", &text)
        } else {
            text
        }
    };
    lines.push(permission);
    let logs = format!(
        "logs {}{}",
        f.log_group,
        if f.log_group_exists {
            ""
        } else {
            " (not found)"
        }
    );
    lines.push(if f.log_group_exists {
        logs
    } else {
        paint(color, "31", &logs)
    });
    for (i, line) in lines.iter().enumerate() {
        let b = if i + 1 == lines.len() {
            "└──"
        } else {
            "├──"
        };
        let _ = writeln!(out, "{pad}{b} {line}");
    }
}

pub fn markdown(audit: &Audit) -> String {
    let d = &audit.deployment;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## stagecheck audit: {} ({}) — {}\n",
        d.rest_api.name,
        d.rest_api.id,
        if audit.passed() { "pass" } else { "**fail**" }
    );
    let _ = writeln!(
        out,
        "{} error(s), {} warning(s), {} note(s).\n",
        audit.counts.error, audit.counts.warning, audit.counts.info
    );
    let _ = writeln!(
        out,
        "| stage | deployment | route | function | table | logging |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for s in &d.stages {
        for r in &s.routes {
            let f = r.function.as_ref().and_then(|f| d.function(&f.arn));
            let _ = writeln!(
                out,
                "| {} | {} | `{}` | {} | {} | {} |",
                s.name,
                s.deployment_id.as_deref().unwrap_or(""),
                r.route.label(),
                f.map_or("", |f| f.name.as_str()),
                f.and_then(|f| f.table.as_deref()).unwrap_or(""),
                s.logging.level
            );
        }
    }
    if !audit.findings.is_empty() {
        let _ = writeln!(out, "\n| severity | code | stage | finding |");
        let _ = writeln!(out, "|---|---|---|---|");
        for f in &audit.findings {
            let _ = writeln!(
                out,
                "| {} | `{}` | {} | {} |",
                f.severity.word(),
                f.code,
                f.stage,
                f.message.replace('|', "\\|")
            );
        }
    }
    out
}

/// One test case per stage and check: failed when the check has an error
/// finding on the stage; warnings and notes go to the case's output.
pub fn junit(audit: &Audit) -> String {
    let mut report = Report::new("stagecheck audit");
    let mut suite = TestSuite::new(format!("audit {}", audit.rest_api.name));
    for stage in &audit.stages {
        for code in CODES {
            let here: Vec<&Finding> = audit
                .findings
                .iter()
                .filter(|f| &f.stage == stage && f.code == code)
                .collect();
            let error = here.iter().find(|f| f.severity == Severity::Error);
            let mut status = match error {
                Some(f) => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(f.message.clone());
                    s.set_type(f.code.clone());
                    s
                }
                None => TestCaseStatus::success(),
            };
            if let TestCaseStatus::NonSuccess { description, .. } = &mut status {
                *description = Some(
                    here.iter()
                        .map(|f| format!("{}: {}", f.resource, f.message))
                        .collect::<Vec<_>>()
                        .join("\n")
                        .into(),
                );
            }
            let mut case = TestCase::new(code, status);
            case.set_classname(format!("stagecheck.audit.{stage}"));
            let others: Vec<String> = here
                .iter()
                .filter(|f| f.severity != Severity::Error)
                .map(|f| format!("{}: {}", f.severity.word(), f.message))
                .collect();
            if !others.is_empty() {
                case.set_system_out(others.join("\n"));
            }
            suite.add_test_case(case);
        }
    }
    report.add_test_suite(suite);
    report
        .to_string()
        .unwrap_or_else(|e| format!("<!-- cannot write JUnit: {e} -->\n"))
}

/// A self-contained page: each stage's chain drawn as a graph, the failing
/// links in red, then the findings.
pub fn html(audit: &Audit) -> String {
    let d = &audit.deployment;
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<h1>stagecheck audit: {} <small>({}, {})</small></h1>",
        escape(&d.rest_api.name),
        escape(&d.rest_api.id),
        escape(&d.region)
    );
    let _ = writeln!(
        body,
        "<p class=\"{}\">{}: {} error(s), {} warning(s), {} note(s)</p>",
        if audit.passed() { "pass" } else { "fail" },
        if audit.passed() { "PASS" } else { "FAIL" },
        audit.counts.error,
        audit.counts.warning,
        audit.counts.info
    );
    for note in &d.notes {
        let _ = writeln!(body, "<p class=\"note\">{}</p>", escape(note));
    }
    for stage in &d.stages {
        let _ = writeln!(
            body,
            "<h2>stage {} <small>deployment {}, logging {}</small></h2>",
            escape(&stage.name),
            escape(stage.deployment_id.as_deref().unwrap_or("(none)")),
            escape(&stage.logging.level)
        );
        body.push_str(&stage_svg(audit, stage));
        let here: Vec<&Finding> = audit.for_stage(&stage.name).collect();
        if !here.is_empty() {
            body.push_str("<ul>");
            for f in here {
                let _ = write!(
                    body,
                    "<li class=\"{}\"><b>{}</b> <code>{}</code> {}</li>",
                    f.severity.word(),
                    f.severity.word(),
                    escape(&f.code),
                    escape(&f.message)
                );
            }
            body.push_str("</ul>\n");
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>stagecheck audit {}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}\
         .pass{{color:#1a7f37}}.fail,.error{{color:#cf222e}}.warning{{color:#9a6700}}\
         .info,.note{{color:#57606a}}svg text{{font-size:12px;font-family:monospace}}\
         </style></head><body>\n{body}</body></html>\n",
        escape(&d.rest_api.name)
    )
}

/// Columns: the stage, its routes, their functions, the tables; an edge per
/// link, red where a finding fails it. The role's reach to another stage's
/// table is a red dashed edge.
fn stage_svg(audit: &Audit, stage: &StageView) -> String {
    let d = &audit.deployment;
    let s = &stage.name;
    let arns = stage.function_arns();
    let tables: Vec<String> = {
        let mut t: Vec<String> = Vec::new();
        for arn in &arns {
            if let Some(f) = d.function(arn) {
                if let Some(own) = &f.table
                    && !t.contains(own)
                {
                    t.push(own.clone());
                }
                for a in f.access.iter().filter(|a| !a.allowed.is_empty()) {
                    if !t.contains(&a.table) {
                        t.push(a.table.clone());
                    }
                }
            }
        }
        t
    };
    let rows = stage.routes.len().max(arns.len()).max(tables.len()).max(1);
    let (w, row_h) = (220.0, 40.0);
    let height = rows as f64 * row_h + 20.0;
    let x = [10.0, 250.0, 490.0, 730.0];
    let y = |i: usize| 10.0 + i as f64 * row_h;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"960\" height=\"{height}\" \
         role=\"img\" aria-label=\"stage {} chain\">",
        escape(s)
    );
    let node = |svg: &mut String, col: usize, row: usize, text: &str, bad: bool| {
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"{}\" width=\"{w}\" height=\"28\" rx=\"4\" fill=\"{}\" \
             stroke=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            x[col],
            y(row),
            if bad { "#ffebe9" } else { "#f6f8fa" },
            if bad { "#cf222e" } else { "#8c959f" },
            x[col] + 6.0,
            y(row) + 18.0,
            escape(text)
        );
    };
    let edge = |svg: &mut String,
                c1: usize,
                r1: usize,
                c2: usize,
                r2: usize,
                bad: bool,
                dashed: bool| {
        let _ = write!(
            svg,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"{}\"{}/>",
            x[c1] + w,
            y(r1) + 14.0,
            x[c2],
            y(r2) + 14.0,
            if bad { "#cf222e" } else { "#57606a" },
            if bad { 2 } else { 1 },
            if dashed {
                " stroke-dasharray=\"5,4\""
            } else {
                ""
            }
        );
    };
    node(&mut svg, 0, 0, &format!("stage {s}"), false);
    for (i, r) in stage.routes.iter().enumerate() {
        let bad = !r.unset_variables.is_empty();
        node(&mut svg, 1, i, &r.route.label(), bad);
        edge(&mut svg, 0, 0, 1, i, bad, false);
        if let Some(f) = &r.function
            && let Some(j) = arns.iter().position(|a| *a == f.arn)
        {
            let fails = failing(
                audit,
                s,
                &f.arn,
                &[
                    "missing-invoke-permission",
                    "source-arn-mismatch",
                    "function-not-found",
                    "shared-function",
                ],
            );
            edge(&mut svg, 1, i, 2, j, fails || bad, false);
        }
    }
    for (j, arn) in arns.iter().enumerate() {
        let Some(f) = d.function(arn) else { continue };
        let bad = !f.found || failing(audit, s, &f.arn, &["shared-function"]);
        node(&mut svg, 2, j, &f.name, bad);
        if let Some(own) = &f.table
            && let Some(k) = tables.iter().position(|t| t == own)
        {
            let t = d.table(own);
            let own_bad = t.is_some_and(|t| !t.exists)
                || failing(
                    audit,
                    s,
                    f.role.as_deref().unwrap_or(""),
                    &["role-denies-own-table"],
                );
            edge(&mut svg, 2, j, 3, k, own_bad, false);
        }
        for a in f.access.iter().filter(|a| !a.allowed.is_empty()) {
            if f.table.as_deref() == Some(a.table.as_str()) {
                continue;
            }
            if let Some(k) = tables.iter().position(|t| *t == a.table) {
                let leak = failing(
                    audit,
                    s,
                    f.role.as_deref().unwrap_or(""),
                    &["role-allows-other-stage-table"],
                );
                edge(&mut svg, 2, j, 3, k, leak, true);
            }
        }
    }
    for (k, t) in tables.iter().enumerate() {
        let table = d.table(t);
        let bad = table.is_some_and(|x| !x.exists || failing(audit, s, &x.arn, &["shared-table"]));
        node(&mut svg, 3, k, t, bad);
    }
    svg.push_str("</svg>\n");
    svg
}
