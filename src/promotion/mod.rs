//! Promotions and rollbacks: the journal that makes a stage change
//! resumable (written before and after every step, so a crash or Ctrl-C
//! leaves where it stopped), and the one document a promotion reports —
//! its steps, each stage's deployment before and after, the gate's
//! evidence, both smokes — which every format renders ([`render`]).

pub mod canary;
pub mod render;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::audit::Finding;
use crate::error::Error;
use crate::summary::Summary;

/// Where a change stands. The order is the order of the steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// The gate passed; the stage was not changed yet (or the change was
    /// sent and not confirmed).
    Switching,
    /// The stage serves the target; the smoke has not passed yet.
    Switched,
    /// The smoke passed on the target: done.
    Passed,
    /// The smoke failed; the stage is being put back.
    RollingBack,
    /// A canary of the target runs on the stage; not judged yet.
    Canary,
    /// The stage serves the previous deployment again.
    RolledBack,
}

impl State {
    pub fn finished(self) -> bool {
        matches!(self, State::Passed | State::RolledBack)
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Step {
    pub name: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub detail: String,
}

/// The journal of one promotion or rollback.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Journal {
    pub version: u32,
    /// `promotion` or `rollback`.
    pub kind: String,
    pub rest_api_id: String,
    pub rest_api_name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub from_stage: Option<String>,
    pub to_stage: String,
    /// What `to_stage` served before: where a rollback returns.
    pub previous_deployment_id: Option<String>,
    pub target_deployment_id: String,
    pub started_at: String,
    pub state: State,
    pub steps: Vec<Step>,
    /// The command's arguments, to resume it (header values left out: they
    /// may be secrets).
    pub command: Vec<String>,
    /// Whether the smoke passed on the target, once it ran.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub smoke_passed: Option<bool>,
    /// A canary release instead of a switch: the share sent to the target.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub canary_percent: Option<f64>,
}

impl Journal {
    pub fn step(&mut self, name: &str, detail: impl Into<String>) {
        self.steps.push(Step {
            name: name.into(),
            at: crate::summary::rfc3339(std::time::SystemTime::now()),
            detail: detail.into(),
        });
    }

    /// Written whole to a temporary file and renamed over the old one: a
    /// crash leaves the last complete journal, never half of one.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::WriteFile {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Runtime(format!("cannot encode the journal: {e}")))?;
        crate::report::write_output(path, &(text + "\n"))
    }

    pub fn load(path: &Path) -> Result<Journal, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| {
            Error::Usage(format!(
                "{}: not a stagecheck journal (written by promote or rollback): {e}",
                path.display()
            ))
        })
    }
}

/// The journals in `dir`, newest first; unreadable files are skipped.
pub fn journals(dir: &Path) -> Vec<(PathBuf, Journal)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, Journal)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| Journal::load(&p).ok().map(|j| (p, j)))
        .collect();
    found.sort_by(|a, b| b.1.started_at.cmp(&a.1.started_at));
    found
}

/// How the gate on the source stage was passed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Gate {
    /// `evidence` (a summary given) or `run` (the scenario run now).
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub evidence_file: Option<String>,
    pub deployment_id: Option<String>,
    pub passed: bool,
    /// Why it did not pass, one sentence.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub refused: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub run: Option<Box<Summary>>,
}

/// Seconds per phase, for the closing numbers and the report.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Timings {
    pub audit_s: f64,
    pub gate_s: f64,
    pub switch_s: f64,
    pub propagation_s: f64,
    pub smoke_s: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rollback_s: Option<f64>,
}

/// The promotion's one document.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Promotion {
    /// `promoted`, `rolled-back`, `refused` (nothing changed) or
    /// `unchanged` (the stage already served the deployment).
    pub outcome: String,
    pub passed: bool,
    /// The reason it did not pass, one sentence.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
    pub journal: Journal,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub journal_file: Option<String>,
    /// The audit's findings on both stages (warnings included).
    pub audit: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gate: Option<Gate>,
    /// Each stage's deployment id before and after.
    pub before: BTreeMap<String, Option<String>>,
    pub after: BTreeMap<String, Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub smoke: Option<Box<Summary>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rollback_smoke: Option<Box<Summary>>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub canary: Option<Box<CanaryReport>>,
    pub timings: Timings,
}

impl Promotion {
    /// A change not made yet: `refused` until a step says otherwise, every
    /// stage's deployment after as before.
    pub fn begin(journal: &Journal, before: BTreeMap<String, Option<String>>) -> Promotion {
        Promotion {
            outcome: "refused".into(),
            passed: false,
            reason: None,
            journal: journal.clone(),
            journal_file: None,
            audit: Vec::new(),
            gate: None,
            after: before.clone(),
            before,
            smoke: None,
            rollback_smoke: None,
            canary: None,
            timings: Timings::default(),
        }
    }
}

/// How the canary was judged.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CanaryReport {
    pub percent: f64,
    pub deployment_id: String,
    /// The canary's share of the requests API Gateway logged, in percent,
    /// and the bounds it had to fall in.
    pub share: f64,
    pub share_bounds: (f64, f64),
    pub share_ok: bool,
    pub canary: canary::Side,
    pub primary: canary::Side,
    pub rules: Vec<canary::Judged>,
    /// The guarded traffic's own run: its checks, thresholds and verification.
    pub run: Option<Box<Summary>>,
    pub passed: bool,
}

/// Whether a summary may stand as the gate's evidence for `stage` serving
/// `deployment`: `Err` with the sentence that refuses it.
pub fn check_evidence(
    summary: &Summary,
    file: &str,
    api: &str,
    stage: &str,
    deployment: Option<&str>,
) -> Result<(), String> {
    let Some(d) = &summary.deployment else {
        return Err(format!(
            "{file} records no deployment (it was run without reading the control plane): run \
             the scenario with --rest-api {api} and pass its summary"
        ));
    };
    if d.rest_api_id != api || d.stage != stage {
        return Err(format!(
            "{file} is a run of stage {} of REST API {}, not of stage {stage} of {api}",
            d.stage, d.rest_api_id
        ));
    }
    if d.deployment_id.as_deref() != deployment {
        return Err(format!(
            "{file} verified deployment {} of stage {stage}, but {stage} now serves {}: what \
             was verified is not what would be promoted; run the scenario again",
            d.deployment_id.as_deref().unwrap_or("(none)"),
            deployment.unwrap_or("(none)")
        ));
    }
    if summary.partial {
        return Err(format!(
            "{file} is of a partial run ({}): only a complete run can gate a promotion",
            summary
                .stopped_by
                .as_deref()
                .unwrap_or("stopped before its end")
        ));
    }
    if !summary.passed {
        return Err(format!(
            "{file} is of a run that failed{}: fix what failed and run it again",
            summary
                .reasons
                .first()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    Ok(())
}
