//! The local sandbox: API Gateway's data plane and the user-service Lambda
//! functions, emulated on top of moto's control planes, DynamoDB and Logs.

use clap::Args;

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// moto (or AWS-compatible) endpoint for every service.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint: Option<String>,
    /// Address to serve the stages on, e.g. 127.0.0.1:8080.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
}

pub fn main(_args: SandboxArgs) -> crate::Result<()> {
    Err(crate::Error::Usage("the sandbox is not built yet".into()))
}
