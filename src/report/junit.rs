//! JUnit XML, so CI systems (GitLab, Jenkins, GitHub test reporters) list
//! every check and threshold as a test and show failures natively. One
//! `testsuite` per kind: the run itself, checks, thresholds (verification
//! results will be one more suite). Deterministic: the same summary always
//! gives the same bytes, so `report --junit` equals `run --junit`. Written
//! with quick-junit, the writer cargo-nextest uses.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

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

    // The run's own time for every suite: checks and rules are judged over
    // the whole run, not one after another.
    let time = Duration::try_from_secs_f64(summary.duration_s).unwrap_or_default();
    let timestamp = chrono::DateTime::parse_from_rfc3339(&summary.started_at).ok();
    let mut report = Report::new(format!("stagecheck {}", summary.scenario));
    report.set_time(time);
    for suite in suites {
        let mut out = TestSuite::new(format!("{}.{}", summary.scenario, suite.name));
        out.set_time(time);
        if let Some(timestamp) = timestamp {
            out.set_timestamp(timestamp);
        }
        for (name, value) in [
            ("scenario", summary.scenario.as_str()),
            ("stage", &summary.stage),
            ("base_url", &summary.base_url),
            ("run_id", &summary.run_id),
        ] {
            out.add_property(Property::new(name, value));
        }
        for case in suite.cases {
            let status = match case.failure {
                None => TestCaseStatus::success(),
                Some((message, details)) => {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status
                        .set_message(message)
                        .set_type(suite.name)
                        .set_description(details);
                    status
                }
            };
            let mut test = TestCase::new(case.name, status);
            test.set_classname(case.classname);
            test.set_time(Duration::ZERO);
            out.add_test_case(test);
        }
        report.add_test_suite(out);
    }
    // quick-junit drops the control characters XML 1.0 forbids (from a
    // response body) and escapes the rest; writing to memory has no other
    // way to fail, but should it, the report says so rather than lie.
    report.to_string().unwrap_or_else(|e| {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- cannot render the JUnit report: {} -->\n<testsuites/>\n",
            e.to_string().replace("--", "- -")
        )
    })
}
