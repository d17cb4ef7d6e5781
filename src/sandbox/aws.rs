//! The AWS SDK clients the sandbox talks to moto with, the credentials they use,
//! and the turning of SDK errors into [`SandboxError`]s.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::Region;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;

use super::{Options, SandboxError};

/// What the sandbox signs its own AWS calls with, and checks clients' SigV4
/// signatures against. Never printed: `Debug` hides the secret.
#[derive(Clone)]
pub struct SandboxCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// False when the environment had none and moto's dummy pair is used.
    pub from_env: bool,
}

impl std::fmt::Debug for SandboxCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("from_env", &self.from_env)
            .finish()
    }
}

impl SandboxCredentials {
    /// Only the environment is read: moto accepts any pair, and going through the
    /// whole provider chain (profiles, SSO, IMDS) would only add start-up delays.
    pub fn from_env() -> SandboxCredentials {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => SandboxCredentials {
                access_key_id,
                secret_access_key,
                session_token: var("AWS_SESSION_TOKEN"),
                from_env: true,
            },
            _ => SandboxCredentials {
                access_key_id: "testing".into(),
                secret_access_key: "testing".into(),
                session_token: None,
                from_env: false,
            },
        }
    }

    pub fn sdk(&self) -> Credentials {
        Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            self.session_token.clone(),
            None,
            "stagecheck-sandbox",
        )
    }
}

/// One client per service, all pointed at the same endpoint (moto routes by the
/// service in the SigV4 credential scope, so one port serves them all).
#[derive(Clone)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub apigateway: aws_sdk_apigateway::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub iam: aws_sdk_iam::Client,
}

impl Clients {
    pub async fn connect(options: &Options) -> Clients {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(&options.endpoint)
            .region(Region::new(options.region.clone()))
            .credentials_provider(options.credentials.sdk())
            // moto answers in milliseconds; long timeouts would only hide that it is gone.
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(2))
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .operation_timeout(Duration::from_secs(20))
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(3))
            .load()
            .await;
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            logs: aws_sdk_cloudwatchlogs::Client::new(&config),
            apigateway: aws_sdk_apigateway::Client::new(&config),
            lambda: aws_sdk_lambda::Client::new(&config),
            iam: aws_sdk_iam::Client::new(&config),
        }
    }
}

/// An SDK failure as a sentence naming what was being done.
/// A function's resource-based policy document, `None` when it has none.
pub async fn function_policy(
    lambda: &aws_sdk_lambda::Client,
    function: &str,
) -> Result<Option<String>, SandboxError> {
    match lambda.get_policy().function_name(function).send().await {
        Ok(out) => Ok(out.policy().map(str::to_string)),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(err) => Err(aws_error(format!("reading {function}'s policy"), err)),
    }
}

pub fn aws_error<E, R>(action: impl Into<String>, err: SdkError<E, R>) -> SandboxError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let message = match &err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            format!(
                "cannot reach the AWS endpoint (is moto running?): {}",
                causes(&err)
            )
        }
        _ => DisplayErrorContext(&err).to_string(),
    };
    SandboxError::Aws {
        action: action.into(),
        message,
    }
}

/// The error and its sources, each by its Display, without the Debug dump
/// `DisplayErrorContext` appends.
pub fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}
