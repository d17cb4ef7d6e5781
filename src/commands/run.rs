//! `stagecheck run`: from arguments to a plan, a run, a summary, its outputs
//! and the exit code.

use std::path::Path;
use std::sync::Arc;

use crate::cli::RunArgs;
use crate::error::Error;
use crate::report::{self, progress, terminal};
use crate::scenario;
use crate::summary::{Detail, Summary};
use crate::{Result, engine, verify};

pub fn run(args: &RunArgs) -> Result<i32> {
    let plan = prepare(&args.file, &args.overrides)?;
    let json_to_stdout = args.out.as_deref() == Some(Path::new("-"));
    // Find out now, not after minutes of load, that the summary cannot be written.
    if let Some(out) = args.out.as_deref().filter(|_| !json_to_stdout) {
        crate::report::check_writable(out)?;
    }
    args.reports.check(json_to_stdout)?;
    let executed = execute(plan, args.start_at, args.quiet)?;
    let summary = &executed.summary;
    if let Some(out) = &args.out {
        report::write_json(summary, out)?;
    }
    args.reports.write(summary)?;
    // The summary is written even when verification failed to run: the
    // traffic's numbers are still the user's.
    if let Some(e) = executed.verify_error {
        return Err(e);
    }
    if !args.quiet {
        report::print_terminal(summary, json_to_stdout || args.reports.to_stdout());
    }
    Ok(report::outcome(summary))
}

/// The plan of a scenario file with the command line's overrides, its
/// files checked and its SigV4 credentials loaded: ready to run.
pub fn prepare(file: &Path, overrides: &scenario::Overrides) -> Result<scenario::Plan> {
    let mut plan = scenario::load(file, overrides)?;
    // A flag naming a file that is not there is the user's to fix (exit 2),
    // not the target's fault.
    if let Some(path) = &overrides.tls.ca_cert
        && let Err(e) = std::fs::metadata(path)
    {
        return Err(Error::Usage(format!(
            "--ca-cert {}: cannot read the file ({e})",
            path.display()
        )));
    }
    if plan.auth.kind() == crate::auth::AuthKind::Iam {
        load_credentials(&mut plan)?;
    }
    Ok(plan)
}

/// A run's summary, redacted, and the error that kept verification from
/// judging it, if one did.
pub struct Executed {
    pub summary: Summary,
    pub verify_error: Option<Error>,
}

/// Runs a prepared plan: the deployment check and verification's preflight,
/// the traffic, verification; errors before the traffic are errors, after it
/// the summary is kept.
pub fn execute(
    plan: scenario::Plan,
    start_at: Option<std::time::SystemTime>,
    quiet: bool,
) -> Result<Executed> {
    let plan = Arc::new(plan);
    // Verification's AWS calls run on their own runtime, apart from the engine's.
    let aws_runtime = if plan.verify.enabled() {
        Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| Error::Runtime(format!("cannot start the runtime: {e}")))?,
        )
    } else {
        None
    };
    // The deployment first, before any traffic: what the stage really
    // invokes explains a wrong table better than DescribeTable can.
    let deployment = match &aws_runtime {
        Some(rt) => rt.block_on(super::preflight::check(&plan))?,
        None if plan.control.rest_api.is_some() => {
            super::runtime()?.block_on(super::preflight::check(&plan))?
        }
        None => None,
    };
    let verifier = match &aws_runtime {
        Some(rt) => Some(rt.block_on(verify::preflight(&plan))?),
        None => None,
    };
    if !quiet {
        eprintln!("{}", plan.secrets.redact(&terminal::run_header(&plan)));
    }
    let mut live = progress::LiveProgress::new(quiet, plan.load.duration);
    if let Some(at) = start_at {
        match at.duration_since(std::time::SystemTime::now()) {
            Ok(_) if !quiet => eprintln!(
                "holding the traffic until {} (--start-at)",
                crate::summary::rfc3339(at)
            ),
            Ok(_) => {}
            // Late even with --quiet: it explains a start skew the merge will refuse.
            Err(late) if late.duration() > std::time::Duration::from_secs(1) => eprintln!(
                "--start-at {} passed {:.1}s ago: starting now",
                crate::summary::rfc3339(at),
                late.duration().as_secs_f64()
            ),
            Err(_) => {}
        }
    }
    let result = engine::run(plan.clone(), start_at, &mut |p| live.update(p));
    live.finish();
    let result = result?;
    let ended_at = std::time::SystemTime::now();
    let mut summary = Summary::build(&plan, &result.metrics, &result.facts, Detail::Full);
    summary.deployment = deployment;
    let mut verify_error = None;
    if let (Some(rt), Some(verifier)) = (&aws_runtime, &verifier) {
        if !quiet {
            eprintln!("verifying backends of stage {}…", plan.stage.name);
        }
        let evidence = verify::Evidence {
            writes: result.writes,
            invocations: result.invocations,
            started_at: result.facts.started_at,
            ended_at,
        };
        let outcome = rt.block_on(async {
            tokio::select! {
                v = verifier.verify(&plan, evidence) => Some(v),
                _ = tokio::signal::ctrl_c() => None,
            }
        });
        match outcome {
            Some(Ok(v)) => {
                summary.verify = Some(v);
                summary.judge(&plan.thresholds);
            }
            Some(Err(e)) => verify_error = Some(e),
            None => {
                summary.partial = true;
                summary.stopped_by = Some("verification interrupted by SIGINT".into());
                summary.judge(&plan.thresholds);
            }
        }
    }
    // Once, before any output is written from it.
    summary.redact(&plan.secrets)?;
    Ok(Executed {
        summary,
        verify_error,
    })
}

/// SigV4 credentials from the default chain, once, before any traffic.
fn load_credentials(plan: &mut scenario::Plan) -> Result<()> {
    let runtime = super::runtime()?;
    let aws = plan.verify.aws.clone();
    runtime.block_on(plan.auth.load(&aws))
}
