use std::process::ExitCode;

use clap::Parser;
use stagecheck::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => stagecheck::run::validate(&args),
        Command::Run(args) => stagecheck::run::run(&args),
        #[cfg(feature = "sandbox")]
        Command::Sandbox(args) => match stagecheck_sandbox::main(args) {
            Ok(()) => Ok(stagecheck::error::exit::PASS),
            Err(err) => {
                eprintln!("{}: {err}", stagecheck::report::terminal::error_label());
                return ExitCode::from(err.exit_code() as u8);
            }
        },
        Command::Report(args) => stagecheck::report::report(&args),
        Command::Compare(args) => stagecheck::report::compare::compare(&args),
        Command::Merge(args) => stagecheck::report::merge::command(&args),
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
