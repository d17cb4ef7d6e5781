//! `stagecheck merge`: shards' summaries merged exactly into one and judged
//! again.

use std::path::Path;

use crate::Result;
use crate::cli::MergeArgs;
use crate::error::Error;
use crate::report;

/// `stagecheck merge A.json B.json … --out M.json`.
pub fn merge(args: &MergeArgs) -> Result<i32> {
    let json_to_stdout = args.out == Path::new("-");
    args.reports.check(json_to_stdout)?;
    report::check_writable(&args.out)?;
    let parts = args
        .summaries
        .iter()
        .map(|path| report::load_summary(path))
        .collect::<Result<Vec<_>>>()?;
    let merged = report::merge::merge(&parts).map_err(|e| {
        let files: Vec<String> = args
            .summaries
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        Error::Usage(format!("{e} (files, in order: {})", files.join(", ")))
    })?;
    if let Some(skew) = merged.start_skew_s
        && skew > args.max_start_skew.as_secs_f64()
    {
        return Err(Error::Usage(format!(
            "cannot merge: the shards started {skew:.3}s apart, more than --max-start-skew {}, so together they did not send the scenario's load; start every shard with one `run --start-at TIME`",
            humantime::format_duration(args.max_start_skew)
        )));
    }
    report::write_json(&merged, &args.out)?;
    args.reports.write(&merged)?;
    if !args.quiet {
        report::print_terminal(&merged, json_to_stdout || args.reports.to_stdout());
    }
    Ok(report::outcome(&merged))
}
