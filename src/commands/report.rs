//! `stagecheck report`: a saved summary rendered again; the exit code from its
//! verdict.

use crate::Result;
use crate::cli::ReportArgs;
use crate::report;

/// `stagecheck report SUMMARY.json`: renders a saved summary again; the exit
/// code is the summary's own verdict.
pub fn report(args: &ReportArgs) -> Result<i32> {
    args.reports.check(false)?;
    let summary = report::load_summary(&args.summary)?;
    args.reports.write(&summary)?;
    if !args.quiet {
        report::print_terminal(&summary, args.reports.to_stdout());
    }
    Ok(report::outcome(&summary))
}
