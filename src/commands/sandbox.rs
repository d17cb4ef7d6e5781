//! `stagecheck sandbox`: the local sandbox crate, linked so one binary tries
//! everything locally. Its errors carry their own exit codes (2 usage, 3 runtime).

use stagecheck_sandbox::SandboxArgs;

/// The sandbox's exit code; its error already printed.
pub fn sandbox(args: SandboxArgs) -> i32 {
    match stagecheck_sandbox::main(args) {
        Ok(()) => crate::error::exit::PASS,
        Err(err) => {
            eprintln!("{}: {err}", crate::report::terminal::error_label());
            err.exit_code()
        }
    }
}
