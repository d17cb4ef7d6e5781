//! `stagecheck compare`: a candidate summary against a baseline; exit 1 on a
//! regression beyond the bounds.

use crate::Result;
use crate::cli::CompareArgs;
use crate::report::compare::compare_files;

pub fn compare(args: &CompareArgs) -> Result<i32> {
    compare_files(
        &args.baseline,
        &args.candidate,
        args.max_regression.as_deref(),
    )
}
