//! `stagecheck validate`: scenario files parsed and validated, no traffic.

use crate::Result;
use crate::cli::ValidateArgs;
use crate::error::exit;
use crate::scenario::{self, Overrides};

pub fn validate(args: &ValidateArgs) -> Result<i32> {
    let overrides = Overrides {
        validate_only: true,
        ..Overrides::default()
    };
    for file in &args.files {
        let plan = scenario::load(file, &overrides)?;
        println!(
            "{}: ok ({} step{}, {} model, {} threshold{})",
            file.display(),
            plan.steps.len(),
            if plan.steps.len() == 1 { "" } else { "s" },
            plan.load.model_name(),
            plan.thresholds.len(),
            if plan.thresholds.len() == 1 { "" } else { "s" },
        );
    }
    Ok(exit::PASS)
}
