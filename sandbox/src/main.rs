//! `stagecheck-sandbox`: the sandbox on its own, for its tests and for machines
//! that have no use for the product (`stagecheck sandbox` links the same crate).

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "stagecheck-sandbox",
    version,
    about = "Serve the local sandbox: API Gateway's data plane and the Lambda functions on moto"
)]
struct Cli {
    #[command(flatten)]
    args: stagecheck_sandbox::SandboxArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match stagecheck_sandbox::main(cli.args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code() as u8)
        }
    }
}
