//! One module per subcommand, on top of every layer: each turns its arguments
//! into calls of the library and an exit code.

pub mod audit;
pub mod canary;
pub mod compare;
pub mod init;
pub mod merge;
pub mod preflight;
pub mod promote;
pub mod report;
pub mod run;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod validate;

/// A runtime for a command's AWS calls, apart from the engine's.
pub(crate) fn runtime() -> crate::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::Error::Runtime(format!("cannot start the runtime: {e}")))
}

/// The deployment `audit` and `init` read; `needed_for` names the command
/// in messages (`for the audit`).
pub(crate) fn read_deployment(
    args: &crate::cli::DeploymentArgs,
    needed_for: &str,
) -> crate::Result<crate::deployment::Deployment> {
    let rule = crate::deployment::TableRule(args.table_rule.clone());
    runtime()?.block_on(async {
        let aws = crate::aws::ControlPlane::new(&args.aws, needed_for, "").await?;
        crate::deployment::read(&aws, &args.rest_api, &args.stages, &rule).await
    })
}
