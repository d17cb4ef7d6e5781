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

/// Where each service is served. moto routes by the service in the SigV4
/// credential scope, so one port serves them all; a service's own variable
/// (`AWS_ENDPOINT_URL_DYNAMODB`, …) sends it elsewhere, e.g. to DynamoDB Local.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub dynamodb: String,
    pub logs: String,
    pub apigateway: String,
    pub lambda: String,
    pub iam: String,
}

/// The services the sandbox calls, in the order of [`Endpoints`]' fields, with
/// the variable the AWS SDKs read for each (the service id, upper-cased, spaces
/// as underscores).
const SERVICES: [(&str, &str); 5] = [
    ("DynamoDB", "AWS_ENDPOINT_URL_DYNAMODB"),
    ("CloudWatch Logs", "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"),
    ("API Gateway", "AWS_ENDPOINT_URL_API_GATEWAY"),
    ("Lambda", "AWS_ENDPOINT_URL_LAMBDA"),
    ("IAM", "AWS_ENDPOINT_URL_IAM"),
];

impl Endpoints {
    /// `default` is `--aws-endpoint` (or `AWS_ENDPOINT_URL`); `var` reads the
    /// per-service variables. Every service must end up with a URL.
    pub fn resolve(
        default: Option<&str>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Endpoints, String> {
        let default = default.map(str::trim).filter(|e| !e.is_empty());
        let [dynamodb, logs, apigateway, lambda, iam] = SERVICES.map(|(service, name)| {
            let own = var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty());
            let (url, from) = match (own.as_deref(), default) {
                (Some(url), _) => (url, name),
                (None, Some(url)) => (url, "--aws-endpoint"),
                (None, None) => {
                    return Err(format!(
                        "the sandbox needs --aws-endpoint (or AWS_ENDPOINT_URL) pointing at moto: \
                         it creates tables, functions and an API there ({service} has no endpoint; \
                         {name} would set one for it alone)"
                    ));
                }
            };
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!(
                    "{from} {url:?} is not a URL (expected e.g. http://127.0.0.1:5000)"
                ));
            }
            Ok(url.trim_end_matches('/').to_string())
        });
        Ok(Endpoints {
            dynamodb: dynamodb?,
            logs: logs?,
            apigateway: apigateway?,
            lambda: lambda?,
            iam: iam?,
        })
    }

    /// One line for the start-up log: the shared endpoint once, then any service
    /// served elsewhere.
    pub fn describe(&self) -> String {
        let urls = [
            &self.dynamodb,
            &self.logs,
            &self.apigateway,
            &self.lambda,
            &self.iam,
        ];
        let common = &self.apigateway;
        let mut text = common.clone();
        for ((service, _), url) in SERVICES.iter().zip(urls) {
            if url != common {
                text.push_str(&format!(", {service} on {url}"));
            }
        }
        text
    }
}

/// One client per service, each pointed at its endpoint.
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
        // Set on each service's own config: the SDK's shared `endpoint_url` would
        // win over the per-service variables the user set.
        let at = |url: &str| config.to_builder().endpoint_url(url).build();
        let e = &options.endpoints;
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(&at(&e.dynamodb)),
            logs: aws_sdk_cloudwatchlogs::Client::new(&at(&e.logs)),
            apigateway: aws_sdk_apigateway::Client::new(&at(&e.apigateway)),
            lambda: aws_sdk_lambda::Client::new(&at(&e.lambda)),
            iam: aws_sdk_iam::Client::new(&at(&e.iam)),
        }
    }
}

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

/// An SDK failure as a sentence naming what was being done.
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

#[cfg(test)]
mod tests {
    use super::Endpoints;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn a_service_variable_wins_over_the_shared_endpoint() {
        let e = Endpoints::resolve(
            Some("http://127.0.0.1:5000/"),
            env(&[("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000")]),
        )
        .unwrap();
        assert_eq!(e.dynamodb, "http://127.0.0.1:8000");
        assert_eq!(e.logs, "http://127.0.0.1:5000");
        assert_eq!(e.iam, "http://127.0.0.1:5000");
        assert_eq!(
            e.describe(),
            "http://127.0.0.1:5000, DynamoDB on http://127.0.0.1:8000"
        );
    }

    #[test]
    fn every_service_needs_an_endpoint() {
        let err = Endpoints::resolve(
            None,
            env(&[("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000")]),
        )
        .unwrap_err();
        assert!(err.contains("--aws-endpoint"), "{err}");
        assert!(err.contains("CloudWatch Logs"), "{err}");
        let all = env(&[
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://a"),
            ("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", "http://b"),
            ("AWS_ENDPOINT_URL_API_GATEWAY", "http://c"),
            ("AWS_ENDPOINT_URL_LAMBDA", "http://d"),
            ("AWS_ENDPOINT_URL_IAM", "http://e"),
        ]);
        assert_eq!(Endpoints::resolve(None, all).unwrap().lambda, "http://d");
    }

    #[test]
    fn a_service_endpoint_must_be_a_url() {
        let err = Endpoints::resolve(
            Some("http://127.0.0.1:5000"),
            env(&[("AWS_ENDPOINT_URL_LAMBDA", "127.0.0.1:9")]),
        )
        .unwrap_err();
        assert!(
            err.starts_with("AWS_ENDPOINT_URL_LAMBDA \"127.0.0.1:9\""),
            "{err}"
        );
    }
}
