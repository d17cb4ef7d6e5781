//! JUnit XML, so CI systems (GitLab, Jenkins, GitHub test reporters) list
//! every check and threshold as a test and show failures natively. One
//! `testsuite` per kind: the run itself, checks, thresholds (verification
//! results will be one more suite). Deterministic: the same summary always
//! gives the same bytes, so `report --junit` equals `run --junit`.

use std::fmt::Write as _;

use crate::summary::Summary;

/// One JUnit test case.
struct Case {
    classname: String,
    name: String,
    /// `(message, details)` when it failed.
    failure: Option<(String, String)>,
}

struct Suite {
    name: &'static str,
    cases: Vec<Case>,
}

pub fn render(summary: &Summary) -> String {
    let class = |kind: &str| format!("stagecheck.{}.{kind}", summary.scenario);
    let run = Suite {
        name: "run",
        cases: vec![Case {
            classname: class("run"),
            name: format!("run completed on stage {}", summary.stage),
            // An interrupted run never passes (see `run::outcome`); say so where CI looks.
            failure: summary.partial.then(|| {
                let why = summary
                    .stopped_by
                    .clone()
                    .unwrap_or_else(|| "stopped before its end".to_string());
                (format!("partial run: {why}"), why)
            }),
        }],
    };
    let checks = Suite {
        name: "checks",
        cases: summary
            .checks
            .details
            .iter()
            .map(|c| Case {
                classname: format!("{}.{}", class("checks"), c.step),
                name: c.name.clone(),
                failure: (c.failed > 0).then(|| {
                    let message = format!("{} of {} failed", c.failed, c.passed + c.failed);
                    let details = match &c.example_failure {
                        Some(e) => format!("{message}; first failure: {e}"),
                        None => message.clone(),
                    };
                    (message, details)
                }),
            })
            .collect(),
    };
    let thresholds = Suite {
        name: "thresholds",
        cases: summary
            .thresholds
            .iter()
            .map(|t| Case {
                classname: class("thresholds"),
                name: t.expr.clone(),
                failure: (!t.ok).then(|| {
                    let message = match t.actual {
                        Some(a) => {
                            format!("threshold `{}` failed: actual {}", t.expr, super::number(a))
                        }
                        None => format!("threshold `{}` could not be measured", t.expr),
                    };
                    (message.clone(), message)
                }),
            })
            .collect(),
    };
    let verification = Suite {
        name: "verification",
        cases: summary
            .verify
            .as_ref()
            .map(|v| v.findings(&summary.stage))
            .unwrap_or_default()
            .into_iter()
            .map(|f| Case {
                classname: class("verification"),
                name: f.name,
                failure: (!f.ok).then(|| {
                    let details = if f.examples.is_empty() {
                        f.message.clone()
                    } else {
                        format!("{}; e.g. {}", f.message, f.examples.join("; "))
                    };
                    (f.message, details)
                }),
            })
            .collect(),
    };
    let suites = [run, checks, verification, thresholds];

    let tests: usize = suites.iter().map(|s| s.cases.len()).sum();
    let failures: usize = suites
        .iter()
        .flat_map(|s| &s.cases)
        .filter(|c| c.failure.is_some())
        .count();
    let time = format!("{:.3}", summary.duration_s);
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{time}\">",
        escape(&format!("stagecheck {}", summary.scenario))
    );
    for suite in &suites {
        let failed = suite.cases.iter().filter(|c| c.failure.is_some()).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\" time=\"{time}\" timestamp=\"{}\">",
            escape(&format!("{}.{}", summary.scenario, suite.name)),
            suite.cases.len(),
            escape(&summary.started_at),
        );
        out.push_str("    <properties>\n");
        for (name, value) in [
            ("scenario", summary.scenario.as_str()),
            ("stage", &summary.stage),
            ("base_url", &summary.base_url),
            ("run_id", &summary.run_id),
        ] {
            let _ = writeln!(
                out,
                "      <property name=\"{name}\" value=\"{}\"/>",
                escape(value)
            );
        }
        out.push_str("    </properties>\n");
        for case in &suite.cases {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"0\"",
                escape(&case.classname),
                escape(&case.name)
            );
            match &case.failure {
                None => out.push_str("/>\n"),
                Some((message, details)) => {
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>",
                        escape(message),
                        suite.name,
                        escape(details)
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Escapes for both text and attribute values; characters XML 1.0 forbids
/// (control characters from a response body) become U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Attribute values would turn raw newlines and tabs into spaces.
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup_and_forbidden_characters() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>\n\u{1}"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;&#10;\u{FFFD}"
        );
    }
}
