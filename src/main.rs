use std::process::ExitCode;

use clap::Parser;
use stagecheck::cli::{Cli, Command};
use stagecheck::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => commands::validate::validate(&args),
        Command::Run(args) => commands::run::run(&args),
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => Ok(commands::sandbox::sandbox(args)),
        Command::Report(args) => commands::report::report(&args),
        Command::Compare(args) => commands::compare::compare(&args),
        Command::Merge(args) => commands::merge::merge(&args),
        Command::Audit(args) => commands::audit::audit(&args),
        Command::Init(args) => commands::init::init(&args),
        Command::Promote(args) => commands::promote::promote(*args),
        Command::Rollback(args) => commands::promote::rollback(&args),
        Command::History(args) => commands::promote::history(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(err) => {
            match &err {
                // The source line with a caret under the column, as rustc shows it.
                stagecheck::Error::Scenario(e) => eprintln!(
                    "{}",
                    e.render(stagecheck::report::terminal::color_for_stderr())
                ),
                _ => eprintln!("{}: {err}", stagecheck::report::terminal::error_label()),
            }
            ExitCode::from(err.exit_code() as u8)
        }
    }
}
