//! `stagecheck promote`, `rollback` and `history`: the only commands that
//! change a stage, each change journaled before it is made.
//!
//! A promotion: audit both stages (an error finding stops it before
//! anything changes) → the gate on the source (a passed summary of its
//! current deployment, or the scenario run now) → the journal → UpdateStage
//! → wait until GetStage shows it and the data plane has settled → smoke the
//! target → on failure roll back, confirm, smoke again. `--resume` picks a
//! journal up where it stopped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::Result;
use crate::audit::{Audit, Severity};
use crate::aws::ControlPlane;
use crate::cli::{HistoryArgs, PromoteArgs, ReportFiles, RollbackArgs, SwitchOptions};
use crate::deployment::{self, TableRule, switch};
use crate::error::{Error, exit};
use crate::promotion::canary::{Rule, share_within};
use crate::promotion::{self, CanaryReport, Gate, Journal, Promotion, State, Timings, render};
use crate::report;
use crate::scenario::Overrides;
use crate::summary::Summary;

/// The REST API the command works on: `--rest-api`, else the scenario's
/// (`target.rest_api`, or the execute-api host).
fn rest_api_of(overrides: &Overrides, scenario: Option<&Path>) -> Result<String> {
    if let Some(api) = &overrides.rest_api {
        return Ok(api.clone());
    }
    if let Some(file) = scenario {
        let probe = Overrides {
            validate_only: true,
            ..overrides.clone()
        };
        let plan = crate::scenario::load(file, &probe)?;
        if let Some(api) = plan.control.rest_api {
            return Ok(api);
        }
    }
    Err(Error::Usage(
        "which REST API? pass --rest-api NAME|ID, or set target.rest_api in the scenario".into(),
    ))
}

/// The command line as a journal keeps it: header values left out (they may
/// be secrets), `--resume` and its value too.
fn journaled_command() -> Vec<String> {
    let mut out = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "-H" || a == "--header" || a == "--resume" {
            args.next();
            continue;
        }
        if a.starts_with("--header=")
            || a.starts_with("--resume=")
            || a.starts_with("-H") && a.len() > 2
        {
            continue;
        }
        out.push(a);
    }
    out
}

/// The overrides of a run on `stage`; `smoke`: one iteration.
fn on_stage(overrides: &Overrides, stage: &str, smoke: bool) -> Overrides {
    let mut ov = overrides.clone();
    ov.stage = Some(stage.to_string());
    if smoke {
        ov.iterations = Some(1);
        ov.rate = None;
        ov.vus = None;
        ov.duration = None;
    }
    ov
}

/// The smoke's plan, built and checked (guards included) without running it.
fn smoke_plan(
    file: &Path,
    overrides: &Overrides,
    api: &str,
    stage: &str,
    smoke: bool,
) -> Result<()> {
    let mut ov = on_stage(overrides, stage, smoke);
    ov.rest_api = Some(api.to_string());
    crate::scenario::load(file, &ov).map(|_| ())
}

/// Runs a scenario on `stage`; `smoke`: one iteration.
fn run_on(
    file: &Path,
    overrides: &Overrides,
    stage: &str,
    smoke: bool,
    quiet: bool,
) -> Result<Summary> {
    let ov = on_stage(overrides, stage, smoke);
    let plan = super::run::prepare(file, &ov)?;
    let executed = super::run::execute(plan, None, quiet)?;
    if let Some(e) = executed.verify_error {
        return Err(e);
    }
    Ok(executed.summary)
}

fn summary_passed(s: &Summary) -> bool {
    s.passed && !s.partial
}

fn write_reports(
    p: &Promotion,
    out: Option<&Path>,
    reports: &ReportFiles,
    quiet: bool,
) -> Result<()> {
    if let Some(out) = out {
        let text = serde_json::to_string_pretty(p)
            .map_err(|e| Error::Runtime(format!("cannot encode the promotion: {e}")))?;
        report::write_output(out, &(text + "\n"))?;
    }
    if let Some(path) = &reports.html {
        report::write_output(path, &render::html(p))?;
    }
    if let Some(path) = &reports.junit {
        report::write_output(path, &render::junit(p))?;
    }
    let markdown = render::markdown(p);
    if let Some(path) = &reports.markdown {
        report::write_output(path, &markdown)?;
    }
    report::append_step_summary(&markdown)?;
    if !quiet {
        let to_stdout = out == Some(Path::new("-")) || reports.to_stdout();
        if to_stdout {
            eprint!("{}", render::terminal(p));
        } else {
            print!("{}", render::terminal(p));
        }
    }
    Ok(())
}

fn check_outputs(out: Option<&Path>, reports: &ReportFiles) -> Result<()> {
    let json_to_stdout = out == Some(Path::new("-"));
    if let Some(out) = out.filter(|_| !json_to_stdout) {
        report::check_writable(out)?;
    }
    reports.check(json_to_stdout)
}

fn new_journal_path(options: &SwitchOptions, api: &str, stage: &str, kind: &str) -> PathBuf {
    if let Some(j) = &options.journal {
        return j.clone();
    }
    let stamp: String = crate::summary::rfc3339(std::time::SystemTime::now())
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    options
        .journal_dir
        .join(format!("{kind}-{api}-{stage}-{stamp}.json"))
}

pub fn promote(mut args: PromoteArgs) -> Result<i32> {
    if args.overrides.stage.is_some() {
        return Err(Error::Usage(
            "promote takes --from and --to, not --stage".into(),
        ));
    }
    // `--resume JOURNAL` alone: the journaled command, with this one's headers.
    if let Some(resume) = args.resume.clone()
        && args.scenario.is_none()
    {
        let journal = Journal::load(&resume)?;
        let mut argv = vec!["stagecheck".to_string()];
        argv.extend(journal.command.iter().cloned());
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(&argv).map_err(|e| {
            Error::Usage(format!(
                "{}: its command cannot be read again: {e}",
                resume.display()
            ))
        })?;
        let crate::cli::Command::Promote(saved) = cli.command else {
            return Err(Error::Usage(format!(
                "{} is not a promotion's journal",
                resume.display()
            )));
        };
        // This invocation's headers and outputs; the rest as journaled.
        let headers = std::mem::take(&mut args.overrides.headers);
        let (out, reports, quiet) = (args.out.take(), args.reports.clone(), args.quiet);
        args = *saved;
        args.overrides.headers.extend(headers);
        if out.is_some() {
            args.out = out;
        }
        if reports.to_stdout()
            || reports.html.is_some()
            || reports.junit.is_some()
            || reports.markdown.is_some()
        {
            args.reports = reports;
        }
        args.quiet |= quiet;
        args.resume = Some(resume);
    }
    let (Some(scenario), Some(from), Some(to)) =
        (args.scenario.clone(), args.from.clone(), args.to.clone())
    else {
        return Err(Error::Usage(
            "promote needs SCENARIO, --from and --to".into(),
        ));
    };
    if from == to {
        return Err(Error::Usage(format!("--from and --to are both {from}")));
    }
    check_outputs(args.out.as_deref(), &args.reports)?;
    let api_wanted = rest_api_of(&args.overrides, Some(&scenario))?;
    let rt = super::runtime()?;
    let aws = rt.block_on(ControlPlane::new(&args.overrides.aws, "to promote", ""))?;
    let smoke_file = args.smoke.clone().unwrap_or_else(|| scenario.clone());
    let smoke_is_default = args.smoke.is_none();

    if let Some(resume) = args.resume.clone() {
        let journal = Journal::load(&resume)?;
        let p = resume_promotion(
            &rt,
            &aws,
            &args,
            journal,
            &resume,
            &smoke_file,
            smoke_is_default,
        )?;
        write_reports(&p, args.out.as_deref(), &args.reports, args.quiet)?;
        return Ok(if p.passed { exit::PASS } else { exit::FAILED });
    }

    let mut timings = Timings::default();
    // 1. Audit both stages: an error finding stops everything.
    let started = Instant::now();
    let plan_probe = crate::scenario::load(
        &scenario,
        &Overrides {
            validate_only: true,
            stage: Some(from.clone()),
            ..args.overrides.clone()
        },
    )?;
    let rule = TableRule(plan_probe.control.table_rule.clone());
    let d = rt.block_on(deployment::read(
        &aws,
        &api_wanted,
        &[from.clone(), to.clone()],
        &rule,
    ))?;
    let audit = Audit::of(d);
    timings.audit_s = started.elapsed().as_secs_f64();
    let api_id = audit.rest_api.id.clone();
    let served_of = |stage: &str| {
        audit
            .deployment
            .stage(stage)
            .and_then(|s| s.deployment_id.clone())
    };
    let from_id = served_of(&from);
    let to_id = served_of(&to);
    let mut journal = Journal {
        version: 1,
        kind: "promotion".into(),
        rest_api_id: api_id.clone(),
        rest_api_name: audit.rest_api.name.clone(),
        from_stage: Some(from.clone()),
        to_stage: to.clone(),
        previous_deployment_id: to_id.clone(),
        target_deployment_id: from_id.clone().unwrap_or_default(),
        started_at: crate::summary::rfc3339(std::time::SystemTime::now()),
        state: State::Switching,
        steps: Vec::new(),
        command: journaled_command(),
        smoke_passed: None,
        canary_percent: args.canary,
    };
    let before: BTreeMap<String, Option<String>> =
        [(from.clone(), from_id.clone()), (to.clone(), to_id.clone())].into();
    let mut p = Promotion {
        audit: audit.findings.clone(),
        ..Promotion::begin(&journal, before.clone())
    };
    let errors: Vec<&crate::audit::Finding> = audit
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .collect();
    journal.step(
        "audit",
        format!(
            "{} error(s), {} warning(s)",
            audit.counts.error, audit.counts.warning
        ),
    );
    if let Some(first) = errors.first() {
        p.reason = Some(format!(
            "the audit found {} error(s) on {from} and {to}, nothing was changed; the first: [{}] {}",
            errors.len(),
            first.code,
            first.message
        ));
        p.journal = journal;
        p.timings = timings;
        write_reports(&p, args.out.as_deref(), &args.reports, args.quiet)?;
        return Ok(exit::FAILED);
    }
    let Some(from_id) = from_id else {
        return Err(Error::Usage(format!(
            "stage {from} serves no deployment: nothing to promote"
        )));
    };

    // 2. The gate.
    let started = Instant::now();
    let gate = match &args.evidence {
        Some(file) => {
            let summary = report::load_summary(file)?;
            let name = file.display().to_string();
            let verdict =
                promotion::check_evidence(&summary, &name, &api_id, &from, Some(&from_id));
            Gate {
                kind: "evidence".into(),
                evidence_file: Some(name),
                deployment_id: Some(from_id.clone()),
                passed: verdict.is_ok(),
                refused: verdict.err(),
                run: None,
            }
        }
        None => {
            let mut ov = args.overrides.clone();
            ov.rest_api = Some(api_id.clone());
            let summary = run_on(&scenario, &ov, &from, false, args.quiet)?;
            let verdict = promotion::check_evidence(
                &summary,
                &format!("the run of {} on {from}", scenario.display()),
                &api_id,
                &from,
                Some(&from_id),
            );
            Gate {
                kind: "run".into(),
                evidence_file: None,
                deployment_id: Some(from_id.clone()),
                passed: verdict.is_ok(),
                refused: verdict.err(),
                run: Some(Box::new(summary)),
            }
        }
    };
    timings.gate_s = started.elapsed().as_secs_f64();
    journal.step(
        "gate",
        if gate.passed {
            format!("{} passed on {from} {from_id}", gate.kind)
        } else {
            format!("refused: {}", gate.refused.clone().unwrap_or_default())
        },
    );
    let gate_passed = gate.passed;
    let gate_refused = gate.refused.clone();
    p.gate = Some(gate);
    if !gate_passed {
        p.reason = gate_refused;
        p.journal = journal;
        p.timings = timings;
        write_reports(&p, args.out.as_deref(), &args.reports, args.quiet)?;
        return Ok(exit::FAILED);
    }

    // 3. Code drift: what was verified is not what will run.
    let drift: Vec<&crate::audit::Finding> = audit
        .findings
        .iter()
        .filter(|f| f.code == "code-drift" && f.stage == to)
        .collect();
    if let Some(f) = drift.first() {
        if args.require_same_code {
            p.reason = Some(format!("--require-same-code: {}", f.message));
            p.journal = journal;
            p.timings = timings;
            write_reports(&p, args.out.as_deref(), &args.reports, args.quiet)?;
            return Ok(exit::FAILED);
        }
        eprintln!(
            "warning: {} (API Gateway's rollback does not cover function code)",
            f.message
        );
        journal.step("code-drift", f.message.clone());
    }

    if to_id.as_deref() == Some(from_id.as_str()) {
        journal.step(
            "switch",
            format!("{to} already serves {from_id}: nothing to change"),
        );
        journal.state = State::Passed;
        p.outcome = "unchanged".into();
        p.passed = true;
        p.journal = journal;
        p.timings = timings;
        write_reports(&p, args.out.as_deref(), &args.reports, args.quiet)?;
        return Ok(exit::PASS);
    }

    // The smoke must be able to run before the stage is changed: a bad
    // smoke file is the user's to fix (exit 2), not a reason to roll back.
    smoke_plan(&smoke_file, &args.overrides, &api_id, &to, smoke_is_default)?;
    if args.canary.is_some() {
        canary_rules(&args.canary_rules)?;
        let logging = audit.deployment.stage(&to).map(|s| s.logging.clone());
        if !logging.as_ref().is_some_and(|l| l.execution_logs()) {
            return Err(Error::Usage(format!(
                "a canary's requests are told apart by API Gateway's canary execution log, and \
                 stage {to} writes none (loggingLevel {}): set loggingLevel INFO on {to} \
                 (UpdateStage op=replace,path=/*/*/logging/loglevel,value=INFO), or promote \
                 without --canary",
                logging.map_or("OFF".to_string(), |l| l.level)
            )));
        }
    }

    // 4. The journal first, then the change.
    let journal_path = new_journal_path(&args.switch, &api_id, &to, "promotion");
    journal.step("journal", journal_path.display().to_string());
    journal.save(&journal_path)?;
    p.journal_file = Some(journal_path.display().to_string());
    p.timings = timings;
    let p = finish(
        &rt,
        &aws,
        &args,
        journal,
        &journal_path,
        p,
        &smoke_file,
        smoke_is_default,
    )?;
    write_reports(&p, args.out.as_deref(), &args.reports, args.quiet)?;
    Ok(if p.passed { exit::PASS } else { exit::FAILED })
}

/// From the switch on, as the journal's state says: switch, wait, smoke,
/// and roll back when the smoke fails. Every step is saved before the next.
#[allow(clippy::too_many_arguments)]
fn finish(
    rt: &tokio::runtime::Runtime,
    aws: &ControlPlane,
    args: &PromoteArgs,
    mut journal: Journal,
    path: &Path,
    mut p: Promotion,
    smoke_file: &Path,
    smoke_is_default: bool,
) -> Result<Promotion> {
    let api = journal.rest_api_id.clone();
    let to = journal.to_stage.clone();
    let target = journal.target_deployment_id.clone();
    let mut ov = args.overrides.clone();
    ov.rest_api = Some(api.clone());
    if let Some(percent) = journal.canary_percent {
        return finish_canary(rt, aws, args, journal, path, p, percent);
    }
    if journal.state == State::Switching {
        let started = Instant::now();
        rt.block_on(switch::switch(aws, &api, &to, &target))?;
        p.timings.switch_s = started.elapsed().as_secs_f64();
        let waited = rt.block_on(switch::wait_served(
            aws,
            &api,
            &to,
            &target,
            args.switch.switch_deadline,
            args.switch.settle,
        ))?;
        p.timings.propagation_s = waited.as_secs_f64();
        journal.state = State::Switched;
        journal.step(
            "switch",
            format!(
                "{to} → {target} (was {})",
                journal.previous_deployment_id.as_deref().unwrap_or("none")
            ),
        );
        journal.save(path)?;
    }
    if journal.state == State::Switched {
        let started = Instant::now();
        let smoke = run_on(smoke_file, &ov, &to, smoke_is_default, args.quiet);
        p.timings.smoke_s = started.elapsed().as_secs_f64();
        let (passed, why) = match &smoke {
            Ok(s) if summary_passed(s) => (true, String::new()),
            Ok(s) => (
                false,
                s.reasons
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "its checks, thresholds or verification failed".into()),
            ),
            Err(e) => (false, e.to_string()),
        };
        if let Ok(s) = smoke {
            p.smoke = Some(Box::new(s));
        }
        journal.smoke_passed = Some(passed);
        if passed {
            journal.state = State::Passed;
            journal.step("smoke", format!("passed on {to} {target}"));
            journal.save(path)?;
            p.outcome = "promoted".into();
            p.passed = true;
        } else {
            journal.state = State::RollingBack;
            journal.step("smoke", format!("failed on {to} {target}: {why}"));
            journal.save(path)?;
            p.reason = Some(format!(
                "the smoke on {to} failed ({why}); {to} was rolled back"
            ));
        }
    }
    if journal.state == State::RollingBack {
        let started = Instant::now();
        let Some(previous) = journal.previous_deployment_id.clone() else {
            return Err(Error::Runtime(format!(
                "the smoke on {to} failed and {to} served no deployment before: nothing to roll back to; {} keeps the journal",
                path.display()
            )));
        };
        rt.block_on(switch::switch(aws, &api, &to, &previous))?;
        rt.block_on(switch::wait_served(
            aws,
            &api,
            &to,
            &previous,
            args.switch.switch_deadline,
            args.switch.settle,
        ))?;
        journal.step(
            "rollback",
            format!("{to} → {previous}, confirmed by GetStage"),
        );
        journal.save(path)?;
        let smoke = run_on(smoke_file, &ov, &to, smoke_is_default, args.quiet);
        let detail = match &smoke {
            Ok(s) if summary_passed(s) => "passed".to_string(),
            Ok(_) => "FAILED".to_string(),
            Err(e) => format!("could not run: {e}"),
        };
        if let Ok(s) = smoke {
            p.rollback_smoke = Some(Box::new(s));
        }
        journal.state = State::RolledBack;
        journal.step(
            "smoke",
            format!("after rollback on {to} {previous}: {detail}"),
        );
        journal.save(path)?;
        p.timings.rollback_s = Some(started.elapsed().as_secs_f64());
        p.outcome = "rolled-back".into();
        p.passed = false;
        if p.reason.is_none() {
            p.reason = Some(format!("{to} was rolled back to {previous}"));
        }
    }
    if journal.state == State::RolledBack && p.outcome == "refused" {
        p.outcome = "rolled-back".into();
        p.reason = Some(format!("the journal says {to} was already rolled back"));
    }
    close(rt, aws, journal, p)
}

/// The end of a promotion: a journal that says it passed is promoted, and
/// the target stage's deployment after is read from GetStage.
fn close(
    rt: &tokio::runtime::Runtime,
    aws: &ControlPlane,
    journal: Journal,
    mut p: Promotion,
) -> Result<Promotion> {
    if journal.state == State::Passed && p.outcome == "refused" {
        p.outcome = "promoted".into();
        p.passed = true;
    }
    let now = rt.block_on(switch::served(aws, &journal.rest_api_id, &journal.to_stage))?;
    p.after.insert(journal.to_stage.clone(), now.deployment_id);
    p.journal = journal;
    Ok(p)
}

fn canary_rules(texts: &[String]) -> Result<Vec<Rule>> {
    if texts.is_empty() {
        return Ok(Rule::defaults());
    }
    texts
        .iter()
        .map(|t| Rule::parse(t).map_err(|e| Error::Usage(format!("--canary-rule {e}"))))
        .collect()
}

/// A canary instead of a switch: start it, send the guarded traffic, tell
/// its requests apart by API Gateway's canary log, judge, then promote it
/// (AWS's copy operations) or remove it (the primary never changed). A
/// journal left in `canary` (the traffic was interrupted) is ended by
/// removing the canary.
fn finish_canary(
    rt: &tokio::runtime::Runtime,
    aws: &ControlPlane,
    args: &PromoteArgs,
    mut journal: Journal,
    path: &Path,
    mut p: Promotion,
    percent: f64,
) -> Result<Promotion> {
    let api = journal.rest_api_id.clone();
    let to = journal.to_stage.clone();
    let target = journal.target_deployment_id.clone();
    if journal.state == State::Canary {
        rt.block_on(switch::end_canary(aws, &api, &to))?;
        journal.state = State::RolledBack;
        journal.step(
            "canary",
            "removed: its traffic was interrupted before it was judged; the primary never changed",
        );
        journal.save(path)?;
        p.outcome = "canary-removed".into();
        p.reason = Some(format!(
            "the canary on {to} was interrupted before it was judged, so it was removed; {to}'s primary deployment never changed"
        ));
    }
    if journal.state == State::Switching {
        let rules = canary_rules(&args.canary_rules)?;
        let started = Instant::now();
        rt.block_on(switch::start_canary(aws, &api, &to, &target, percent))?;
        p.timings.switch_s = started.elapsed().as_secs_f64();
        journal.state = State::Canary;
        journal.step("canary", format!("{percent}% of {to} → {target}"));
        journal.save(path)?;
        // The sandbox and AWS take a moment to route the new share.
        std::thread::sleep(args.switch.settle);
        p.timings.propagation_s = args.switch.settle.as_secs_f64();

        let mut ov = args.overrides.clone();
        ov.rest_api = Some(api.clone());
        ov.stage = Some(to.clone());
        ov.rate = Some(args.canary_rate);
        ov.vus = None;
        ov.iterations = None;
        ov.duration = Some(args.canary_for);
        // --canary is the consent to this traffic on a protected stage.
        ov.allow_prod = true;
        let scenario = args.scenario.clone().unwrap_or_default();
        let traffic_from = std::time::SystemTime::now();
        let started = Instant::now();
        let run = super::run::prepare(&scenario, &ov)
            .and_then(|plan| super::run::execute(plan, None, args.quiet));
        let traffic_to = std::time::SystemTime::now();
        p.timings.smoke_s = started.elapsed().as_secs_f64();
        let (run, run_error) = match run {
            Ok(e) => (Some(e.summary), e.verify_error),
            Err(e) => (None, Some(e)),
        };
        let observed = rt.block_on(super::canary::observe(
            aws,
            &api,
            &to,
            traffic_from,
            traffic_to,
            std::time::Duration::from_secs(60),
        ))?;
        let total = observed.canary.requests + observed.primary.requests;
        let (share_ok, low, high) = share_within(observed.canary.requests, total, percent);
        let share = if total == 0 {
            0.0
        } else {
            observed.canary.requests as f64 * 100.0 / total as f64
        };
        let judged: Vec<_> = rules
            .iter()
            .map(|r| r.judge(&observed.canary, &observed.primary))
            .collect();
        let run_passed = run.as_ref().is_some_and(summary_passed) && run_error.is_none();
        let passed = share_ok && judged.iter().all(|j| j.ok) && run_passed;
        let mut why = Vec::new();
        if !share_ok {
            why.push(format!(
                "the canary had {share:.1}% of {total} requests, outside {low:.1}–{high:.1}% for {percent}%"
            ));
        }
        for j in judged.iter().filter(|j| !j.ok) {
            why.push(format!(
                "{} failed ({:.2} against {:.2})",
                j.rule, j.canary, j.limit
            ));
        }
        if !run_passed {
            why.push(match &run_error {
                Some(e) => format!("the guarded traffic could not be verified: {e}"),
                None => "the guarded traffic's checks, thresholds or verification failed".into(),
            });
        }
        p.canary = Some(Box::new(CanaryReport {
            percent,
            deployment_id: target.clone(),
            share,
            share_bounds: (low, high),
            share_ok,
            canary: observed.canary,
            primary: observed.primary,
            rules: judged,
            run: run.map(Box::new),
            passed,
        }));
        journal.smoke_passed = Some(passed);
        if passed {
            rt.block_on(switch::promote_canary(aws, &api, &to))?;
            rt.block_on(switch::wait_served(
                aws,
                &api,
                &to,
                &target,
                args.switch.switch_deadline,
                args.switch.settle,
            ))?;
            journal.state = State::Passed;
            journal.step("canary", format!("passed ({share:.1}% of {total} requests): promoted, {to} serves {target}, canary removed"));
            p.outcome = "promoted".into();
            p.passed = true;
        } else {
            rt.block_on(switch::end_canary(aws, &api, &to))?;
            journal.state = State::RolledBack;
            journal.step(
                "canary",
                format!(
                    "failed: {}; removed, the primary never changed",
                    why.join("; ")
                ),
            );
            p.outcome = "canary-removed".into();
            p.reason = Some(format!(
                "the canary failed: {}; it was removed and {to}'s primary never changed",
                why.join("; ")
            ));
        }
        journal.save(path)?;
    }
    close(rt, aws, journal, p)
}

/// `--resume`: what the stage serves now decides where to pick up.
fn resume_promotion(
    rt: &tokio::runtime::Runtime,
    aws: &ControlPlane,
    args: &PromoteArgs,
    mut journal: Journal,
    path: &Path,
    smoke_file: &Path,
    smoke_is_default: bool,
) -> Result<Promotion> {
    let to = journal.to_stage.clone();
    let now = rt.block_on(switch::served(aws, &journal.rest_api_id, &to))?;
    let before: BTreeMap<String, Option<String>> = [(to.clone(), now.deployment_id.clone())].into();
    // A switch sent but not journaled: the stage says whether it took.
    if journal.state == State::Switching
        && journal.canary_percent.is_none()
        && now.deployment_id.as_deref() == Some(journal.target_deployment_id.as_str())
    {
        journal.state = State::Switched;
        journal.step(
            "resume",
            format!(
                "{to} serves {} already: smoking it",
                journal.target_deployment_id
            ),
        );
    } else {
        journal.step(
            "resume",
            format!(
                "from state {:?}; {to} serves {}",
                journal.state,
                now.deployment_id.as_deref().unwrap_or("none")
            ),
        );
    }
    journal.save(path)?;
    let p = Promotion {
        journal_file: Some(path.display().to_string()),
        ..Promotion::begin(&journal, before)
    };
    finish(
        rt,
        aws,
        args,
        journal,
        path,
        p,
        smoke_file,
        smoke_is_default,
    )
}

pub fn rollback(args: &RollbackArgs) -> Result<i32> {
    let Some(stage) = args.overrides.stage.clone() else {
        return Err(Error::Usage("rollback needs --stage STAGE".into()));
    };
    check_outputs(args.out.as_deref(), &args.reports)?;
    let api_wanted = rest_api_of(&args.overrides, args.smoke.as_deref())?;
    let rt = super::runtime()?;
    let aws = rt.block_on(ControlPlane::new(&args.overrides.aws, "to roll back", ""))?;
    let api = rt.block_on(deployment::read::find_api(&aws, &api_wanted))?;
    let now = rt.block_on(switch::served(&aws, &api.id, &stage))?;
    let journals: Vec<(PathBuf, Journal)> = promotion::journals(&args.switch.journal_dir)
        .into_iter()
        .filter(|(_, j)| j.rest_api_id == api.id && j.to_stage == stage)
        .collect();
    let current = now.deployment_id.clone();
    // The target: --to, else the newest journaled deployment of this stage
    // that passed its smoke and is not the one served now, else the next
    // older deployment of the history.
    let target = match &args.to_deployment {
        Some(id) => id.clone(),
        None => {
            let smoked = journals.iter().find_map(|(_, j)| {
                (j.smoke_passed == Some(true) && Some(&j.target_deployment_id) != current.as_ref())
                    .then(|| j.target_deployment_id.clone())
            });
            match smoked {
                Some(id) => id,
                None => {
                    let history = rt.block_on(switch::deployments(&aws, &api.id))?;
                    let at = history.iter().position(|d| Some(&d.id) == current.as_ref());
                    match at.and_then(|i| history.get(i + 1)) {
                        Some(older) => older.id.clone(),
                        None => {
                            return Err(Error::Usage(format!(
                                "stage {stage} serves {}, and REST API {} has no older deployment to roll back to (and no journal in {} names one)",
                                current.as_deref().unwrap_or("no deployment"),
                                api.name,
                                args.switch.journal_dir.display()
                            )));
                        }
                    }
                }
            }
        }
    };
    if Some(&target) == current.as_ref() {
        return Err(Error::Usage(format!(
            "stage {stage} already serves {target}"
        )));
    }
    // The smoke: --smoke, else the journaled promotion's.
    let smoke_file = args.smoke.clone().or_else(|| {
        journals.iter().find_map(|(_, j)| {
            let mut argv = vec!["stagecheck".to_string()];
            argv.extend(j.command.iter().cloned());
            match <crate::cli::Cli as clap::Parser>::try_parse_from(&argv)
                .ok()?
                .command
            {
                crate::cli::Command::Promote(p) => p.smoke.or(p.scenario),
                _ => None,
            }
        })
    });
    let path = new_journal_path(&args.switch, &api.id, &stage, "rollback");
    let mut journal = Journal {
        version: 1,
        kind: "rollback".into(),
        rest_api_id: api.id.clone(),
        rest_api_name: api.name.clone(),
        from_stage: None,
        to_stage: stage.clone(),
        previous_deployment_id: current.clone(),
        target_deployment_id: target.clone(),
        started_at: crate::summary::rfc3339(std::time::SystemTime::now()),
        state: State::Switching,
        steps: Vec::new(),
        command: journaled_command(),
        smoke_passed: None,
        canary_percent: None,
    };
    journal.step("journal", path.display().to_string());
    journal.save(&path)?;
    let started = Instant::now();
    rt.block_on(switch::switch(&aws, &api.id, &stage, &target))?;
    let switch_s = started.elapsed().as_secs_f64();
    let waited = rt.block_on(switch::wait_served(
        &aws,
        &api.id,
        &stage,
        &target,
        args.switch.switch_deadline,
        args.switch.settle,
    ))?;
    journal.state = State::Switched;
    journal.step(
        "switch",
        format!(
            "{stage} → {target} (was {}), confirmed by GetStage",
            current.as_deref().unwrap_or("none")
        ),
    );
    journal.save(&path)?;
    let mut p = Promotion {
        outcome: "rolled-back".into(),
        passed: true,
        journal_file: Some(path.display().to_string()),
        after: [(stage.clone(), Some(target.clone()))].into(),
        timings: Timings {
            switch_s,
            propagation_s: waited.as_secs_f64(),
            ..Timings::default()
        },
        ..Promotion::begin(&journal, [(stage.clone(), current.clone())].into())
    };
    match &smoke_file {
        Some(file) => {
            let mut ov = args.overrides.clone();
            ov.rest_api = Some(api.id.clone());
            let started = Instant::now();
            let smoke = run_on(file, &ov, &stage, true, args.quiet);
            p.timings.smoke_s = started.elapsed().as_secs_f64();
            let passed = matches!(&smoke, Ok(s) if summary_passed(s));
            journal.smoke_passed = Some(passed);
            journal.state = if passed {
                State::Passed
            } else {
                State::RolledBack
            };
            journal.step(
                "smoke",
                if passed {
                    "passed".to_string()
                } else {
                    match &smoke {
                        Err(e) => format!("could not run: {e}"),
                        Ok(_) => "FAILED".into(),
                    }
                },
            );
            if let Ok(s) = smoke {
                p.smoke = Some(Box::new(s));
            }
            if !passed {
                p.passed = false;
                p.reason = Some(format!(
                    "{stage} serves {target} again, but its smoke failed"
                ));
            }
        }
        None => {
            journal.state = State::Passed;
            journal.step(
                "smoke",
                "none: only GetStage confirmed the rollback (pass --smoke SCENARIO)",
            );
            p.reason = Some(
                "only GetStage confirmed the rollback: no smoke scenario was given or journaled"
                    .into(),
            );
        }
    }
    journal.save(&path)?;
    p.journal = journal;
    write_reports(&p, args.out.as_deref(), &args.reports, args.quiet)?;
    Ok(if p.passed { exit::PASS } else { exit::FAILED })
}

/// The stage's history, newest first.
#[derive(Debug, serde::Serialize)]
struct History {
    rest_api_id: String,
    rest_api_name: String,
    stage: String,
    serves: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    canary: Option<switch::Served>,
    deployments: Vec<HistoryEntry>,
    changes: Vec<Journal>,
}

#[derive(Debug, serde::Serialize)]
struct HistoryEntry {
    #[serde(flatten)]
    deployment: switch::DeploymentInfo,
    serving: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    canary: bool,
}

pub fn history(args: &HistoryArgs) -> Result<i32> {
    if let Some(out) = args.out.as_deref().filter(|o| *o != Path::new("-")) {
        report::check_writable(out)?;
    }
    let rt = super::runtime()?;
    let aws = rt.block_on(ControlPlane::new(&args.aws, "for the history", ""))?;
    let api = rt.block_on(deployment::read::find_api(&aws, &args.rest_api))?;
    let now = rt.block_on(switch::served(&aws, &api.id, &args.stage))?;
    let all = rt.block_on(switch::deployments(&aws, &api.id))?;
    let changes: Vec<Journal> = promotion::journals(&args.journal_dir)
        .into_iter()
        .map(|(_, j)| j)
        .filter(|j| j.rest_api_id == api.id && j.to_stage == args.stage)
        .collect();
    let h = History {
        rest_api_id: api.id.clone(),
        rest_api_name: api.name.clone(),
        stage: args.stage.clone(),
        serves: now.deployment_id.clone(),
        canary: now.canary_deployment_id.is_some().then(|| now.clone()),
        deployments: all
            .into_iter()
            .map(|d| HistoryEntry {
                serving: Some(&d.id) == now.deployment_id.as_ref(),
                canary: Some(&d.id) == now.canary_deployment_id.as_ref(),
                deployment: d,
            })
            .collect(),
        changes,
    };
    let mut text = format!(
        "stage {} of REST API {} ({}) serves {}\n",
        h.stage,
        h.rest_api_name,
        h.rest_api_id,
        h.serves.as_deref().unwrap_or("no deployment")
    );
    if let Some(c) = &h.canary {
        text.push_str(&format!(
            "canary: {} at {}%\n",
            c.canary_deployment_id.as_deref().unwrap_or("?"),
            c.canary_percent
                .map(crate::report::number)
                .unwrap_or_default()
        ));
    }
    text.push_str("deployments, newest first:\n");
    for d in &h.deployments {
        text.push_str(&format!(
            "  {} {:<12} {}{}{}\n",
            if d.serving {
                "→"
            } else if d.canary {
                "~"
            } else {
                " "
            },
            d.deployment.id,
            d.deployment.created.as_deref().unwrap_or(""),
            d.deployment
                .description
                .as_deref()
                .map(|t| format!("  {t}"))
                .unwrap_or_default(),
            if d.serving {
                "  (serving)"
            } else if d.canary {
                "  (canary)"
            } else {
                ""
            }
        ));
    }
    if !h.changes.is_empty() {
        text.push_str("changes by stagecheck, newest first:\n");
        for j in &h.changes {
            text.push_str(&format!(
                "  {} {} {} → {} ({:?}{})\n",
                j.started_at,
                j.kind,
                j.previous_deployment_id.as_deref().unwrap_or("none"),
                j.target_deployment_id,
                j.state,
                match j.smoke_passed {
                    Some(true) => ", smoke passed",
                    Some(false) => ", smoke failed",
                    None => "",
                }
            ));
        }
    }
    match &args.out {
        Some(out) => {
            let json = serde_json::to_string_pretty(&h)
                .map_err(|e| Error::Runtime(format!("cannot encode the history: {e}")))?;
            report::write_output(out, &(json + "\n"))?;
            if out != Path::new("-") {
                print!("{text}");
            }
        }
        None => print!("{text}"),
    }
    Ok(exit::PASS)
}
