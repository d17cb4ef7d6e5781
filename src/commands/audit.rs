//! `stagecheck audit`: reads the deployment from the control plane, judges
//! every link of each stage's chain, prints the tree and writes the reports.
//! Exit 0 clean, 1 an error finding, 2 bad usage, 3 the control plane could
//! not be read.

use crate::Result;
use crate::audit::{Audit, render};
use crate::cli::AuditArgs;

use crate::error::{Error, exit};
use crate::report::{self, terminal};

pub fn audit(args: &AuditArgs) -> Result<i32> {
    let outputs = [&args.out, &args.html, &args.markdown, &args.junit];
    let on_stdout = outputs
        .iter()
        .filter(|o| o.as_deref() == Some(std::path::Path::new("-")))
        .count();
    if on_stdout > 1 {
        return Err(Error::Usage(
            "only one output can go to stdout (`-`); give the others file names".into(),
        ));
    }
    for path in outputs.into_iter().flatten() {
        if path != std::path::Path::new("-") {
            report::check_writable(path)?;
        }
    }
    let deployment = super::read_deployment(&args.deployment, "for the audit")?;
    let audit = Audit::of(deployment);
    if let Some(out) = &args.out {
        let text = serde_json::to_string_pretty(&audit)
            .map_err(|e| Error::Runtime(format!("cannot encode the audit: {e}")))?;
        report::write_output(out, &(text + "\n"))?;
    }
    if let Some(path) = &args.html {
        report::write_output(path, &render::html(&audit))?;
    }
    if let Some(path) = &args.junit {
        report::write_output(path, &render::junit(&audit))?;
    }
    let markdown = render::markdown(&audit);
    if let Some(path) = &args.markdown {
        report::write_output(path, &markdown)?;
    }
    report::append_step_summary(&markdown)?;
    if !args.quiet {
        if on_stdout > 0 {
            eprint!("{}", render::terminal(&audit, terminal::color_for_stderr()));
        } else {
            print!("{}", render::terminal(&audit, terminal::color_for_stdout()));
        }
    }
    Ok(if audit.passed() {
        exit::PASS
    } else {
        exit::FAILED
    })
}
