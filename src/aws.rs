//! AWS clients from the standard configuration chain (environment, profiles,
//! SSO), with `--region`, `--profile` and `--aws-endpoint` on top;
//! `AWS_ENDPOINT_URL` and its per-service forms are honoured by the loader.
//!
//! This module also owns how an AWS failure reads: one or two sentences with
//! the operation, the resource, the Region and endpoint, the service's code
//! and message and the fix where one is known — never the SDK's `Debug`
//! dump, whose raw HTTP response runs to thousands of characters.

use std::ops::Deref;

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::error::{AwsError, AwsFailure};

/// Where the AWS SDK looks; empty means the default chain and environment.
/// Also `run`'s AWS flags, so they need no copying into these options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AwsOptions {
    /// AWS Region for verification (default: the standard chain).
    #[arg(long)]
    pub region: Option<String>,

    /// AWS profile for verification.
    #[arg(long)]
    pub profile: Option<String>,

    /// Endpoint for every AWS service (e.g. moto); `AWS_ENDPOINT_URL` and its per-service forms work too.
    #[arg(long = "aws-endpoint", value_name = "URL")]
    pub endpoint: Option<String>,
}

/// A service's client and where its calls go, for messages.
#[derive(Clone)]
pub struct Service<C> {
    pub client: C,
    /// `DynamoDB`, `CloudWatch Logs`.
    pub name: &'static str,
    /// The IAM action prefix: `dynamodb`, `logs`.
    pub action_prefix: &'static str,
    pub region: String,
    pub endpoint: String,
    /// What the user can do instead, ending a sentence that starts with "or":
    /// `pass --no-verify to skip verification`; empty when there is nothing.
    pub way_out: &'static str,
}

impl<C> Deref for Service<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.client
    }
}

#[derive(Clone)]
pub struct Clients {
    pub dynamodb: Service<aws_sdk_dynamodb::Client>,
    pub logs: Service<aws_sdk_cloudwatchlogs::Client>,
    /// GetStage only: where the stage writes its access log, and in what format.
    pub apigateway: Service<aws_sdk_apigateway::Client>,
}

/// Verification's way out of an AWS problem.
const SKIP_VERIFY: &str = "pass --no-verify to skip verification";

/// The clients that read a deployment from the control plane (`audit`,
/// `init`, the run's preflight).
#[derive(Clone)]
pub struct ControlPlane {
    pub apigateway: Service<aws_sdk_apigateway::Client>,
    pub lambda: Service<aws_sdk_lambda::Client>,
    pub iam: Service<aws_sdk_iam::Client>,
    pub dynamodb: Service<aws_sdk_dynamodb::Client>,
    pub logs: Service<aws_sdk_cloudwatchlogs::Client>,
    pub region: String,
}

impl ControlPlane {
    /// `needed_for` names the command in messages (`for the audit`);
    /// `way_out` what the user can do instead (empty: nothing).
    pub async fn new(
        options: &AwsOptions,
        needed_for: &str,
        way_out: &'static str,
    ) -> Result<ControlPlane, AwsError> {
        let config = config(options).await;
        let or = |text: &str| {
            if way_out.is_empty() {
                format!("{text}.")
            } else {
                format!("{text}, or {way_out}.")
            }
        };
        let Some(region) = config.region().map(|r| r.to_string()) else {
            return Err(AwsError {
                failure: AwsFailure::Other,
                message: format!(
                    "No AWS Region {needed_for}: {}",
                    or("pass --region, set AWS_REGION, or set region in the profile")
                ),
            });
        };
        let otherwise = if way_out.is_empty() {
            String::new()
        } else {
            format!("or {way_out}")
        };
        credentials(&config, options, needed_for, &otherwise).await?;
        let service =
            |name: &'static str, action_prefix: &'static str, env: &str, host: &str| ServiceAt {
                name,
                action_prefix,
                endpoint: endpoint_of(options, &config, env, host, &region),
                region: region.clone(),
                way_out,
            };
        Ok(ControlPlane {
            apigateway: service("API Gateway", "apigateway", "API_GATEWAY", "apigateway")
                .with(aws_sdk_apigateway::Client::new(&config)),
            lambda: service("Lambda", "lambda", "LAMBDA", "lambda")
                .with(aws_sdk_lambda::Client::new(&config)),
            iam: service("IAM", "iam", "IAM", "iam").with(aws_sdk_iam::Client::new(&config)),
            dynamodb: service("DynamoDB", "dynamodb", "DYNAMODB", "dynamodb")
                .with(aws_sdk_dynamodb::Client::new(&config)),
            logs: service("CloudWatch Logs", "logs", "CLOUDWATCH_LOGS", "logs")
                .with(aws_sdk_cloudwatchlogs::Client::new(&config)),
            region: region.clone(),
        })
    }
}

pub async fn config(options: &AwsOptions) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &options.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(profile) = &options.profile {
        // The default chain reads the environment's keys before any profile:
        // a profile named on the command line must win over them.
        let credentials = aws_config::profile::ProfileFileCredentialsProvider::builder()
            .profile_name(profile)
            .build();
        loader = loader
            .profile_name(profile)
            .credentials_provider(credentials);
    }
    if let Some(endpoint) = &options.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    loader.load().await
}

impl Clients {
    /// Clients for verification. The Region and the credentials are looked
    /// up here, once, so that their absence is one sentence before any
    /// traffic rather than a failed call after it.
    pub async fn new(options: &AwsOptions) -> Result<Clients, AwsError> {
        let config = config(options).await;
        let Some(region) = config.region().map(|r| r.to_string()) else {
            return Err(AwsError {
                failure: AwsFailure::Other,
                message: "No AWS Region for verification: pass --region, set AWS_REGION, or \
                          set region in the profile (or pass --no-verify to skip verification)."
                    .into(),
            });
        };
        credentials(
            &config,
            options,
            "for verification",
            "or pass --no-verify to skip verification",
        )
        .await?;
        let endpoint = |env_service: &str, host: &str| {
            endpoint_of(options, &config, env_service, host, &region)
        };
        Ok(Clients {
            dynamodb: Service {
                client: aws_sdk_dynamodb::Client::new(&config),
                name: "DynamoDB",
                action_prefix: "dynamodb",
                endpoint: endpoint("DYNAMODB", "dynamodb"),
                region: region.clone(),
                way_out: SKIP_VERIFY,
            },
            logs: Service {
                client: aws_sdk_cloudwatchlogs::Client::new(&config),
                name: "CloudWatch Logs",
                action_prefix: "logs",
                endpoint: endpoint("CLOUDWATCH_LOGS", "logs"),
                region: region.clone(),
                way_out: SKIP_VERIFY,
            },
            apigateway: Service {
                client: aws_sdk_apigateway::Client::new(&config),
                name: "API Gateway",
                action_prefix: "apigateway",
                endpoint: endpoint("API_GATEWAY", "apigateway"),
                region: region.clone(),
                way_out: SKIP_VERIFY,
            },
        })
    }
}

/// A [`Service`] without its client yet.
struct ServiceAt {
    name: &'static str,
    action_prefix: &'static str,
    endpoint: String,
    region: String,
    way_out: &'static str,
}

impl ServiceAt {
    fn with<C>(self, client: C) -> Service<C> {
        Service {
            client,
            name: self.name,
            action_prefix: self.action_prefix,
            endpoint: self.endpoint,
            region: self.region,
            way_out: self.way_out,
        }
    }
}

/// The endpoint a service's calls go to, in the loader's order: the command
/// line, the service's own variable, `AWS_ENDPOINT_URL` or the profile's
/// `endpoint_url`, else AWS's regional endpoint.
fn endpoint_of(
    options: &AwsOptions,
    config: &aws_config::SdkConfig,
    env_service: &str,
    host: &str,
    region: &str,
) -> String {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    options
        .endpoint
        .clone()
        .or_else(|| env(&format!("AWS_ENDPOINT_URL_{env_service}")))
        .or_else(|| config.endpoint_url().map(str::to_string))
        .unwrap_or_else(|| format!("https://{host}.{region}.amazonaws.com"))
}

impl<C> Service<C> {
    /// `operation` on `resource` (`table test-User`) failed with `error`:
    /// one or two sentences.
    pub fn error<E>(
        &self,
        operation: &str,
        resource: &str,
        error: &SdkError<E, HttpResponse>,
    ) -> AwsError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let at = format!("{}, {}", self.region, self.endpoint);
        let (failure, message) = match error {
            SdkError::ServiceError(service) => {
                let err = service.err();
                let raw = service.raw();
                // An answer the SDK could not read a code from (an emulator's
                // or a proxy's own error format): its status and first words.
                // moto answers an IAM refusal in XML even for JSON services.
                let body = raw
                    .body()
                    .bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                let code = err
                    .code()
                    .map(str::to_string)
                    .or_else(|| xml_element(&body, "Code"))
                    .unwrap_or_else(|| format!("HTTP {}", raw.status().as_u16()));
                let said = err
                    .message()
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .or_else(|| {
                        err.code().is_none().then(|| {
                            xml_element(&body, "Message").unwrap_or_else(|| one_line(&body))
                        })
                    })
                    .filter(|m| !m.is_empty());
                let said = said.map_or_else(String::new, |m| format!(": {}", sentence_end(&m)));
                let fix = fix_for(
                    &code,
                    &iam_action(self.action_prefix, operation),
                    self.way_out,
                );
                (
                    AwsFailure::Service { code: code.clone() },
                    format!("{operation} on {resource} failed ({at}): {code}{said}{fix}"),
                )
            }
            SdkError::TimeoutError(_) => (
                AwsFailure::Timeout,
                format!(
                    "{operation} on {resource}: {} did not answer in time ({at}). Check the \
                     endpoint (--aws-endpoint, AWS_ENDPOINT_URL) and the network{}",
                    self.name,
                    or_else(self.way_out)
                ),
            ),
            SdkError::DispatchFailure(dispatch) => {
                let failure = if dispatch.is_timeout() {
                    AwsFailure::Timeout
                } else if dispatch.is_io() {
                    AwsFailure::Unreachable
                } else {
                    AwsFailure::Other
                };
                (
                    failure,
                    format!(
                        "{operation} on {resource}: cannot reach {} ({at}): {}. Check the \
                         endpoint (--aws-endpoint, AWS_ENDPOINT_URL) and the network{}",
                        self.name,
                        innermost(error),
                        or_else(self.way_out)
                    ),
                )
            }
            SdkError::ResponseError(response) => (
                AwsFailure::BadResponse,
                format!(
                    "{operation} on {resource}: the answer (HTTP {}) is not {}'s ({at}): {}. \
                     Check that the endpoint is {}.",
                    response.raw().status().as_u16(),
                    self.name,
                    innermost(error),
                    self.name
                ),
            ),
            _ => (
                AwsFailure::Other,
                format!(
                    "{operation} on {resource} failed ({at}): {}.",
                    innermost(error)
                ),
            ),
        };
        AwsError { failure, message }
    }

    /// A failure of ours around a call (a batch that never completes).
    pub fn problem(&self, operation: &str, resource: &str, what: &str) -> AwsError {
        AwsError {
            failure: AwsFailure::Other,
            message: format!(
                "{operation} on {resource} ({}, {}): {what}",
                self.region, self.endpoint
            ),
        }
    }
}

/// `, or {way_out}.`, or just the full stop.
fn or_else(way_out: &str) -> String {
    if way_out.is_empty() {
        ".".into()
    } else {
        format!(", or {way_out}.")
    }
}

/// The fix for the codes whose fix is known, as a second sentence.
/// The IAM action a call needs: `logs:FilterLogEvents`, but API Gateway's
/// management calls are authorised by HTTP method (`GetStage` needs
/// `apigateway:GET`, `UpdateStage` `apigateway:PATCH`).
fn iam_action(prefix: &str, operation: &str) -> String {
    if prefix == "apigateway" {
        let methods = [
            ("Get", "GET"),
            ("Update", "PATCH"),
            ("Create", "POST"),
            ("Delete", "DELETE"),
            ("Put", "PUT"),
        ];
        if let Some((_, method)) = methods.iter().find(|(verb, _)| operation.starts_with(verb)) {
            return format!("apigateway:{method}");
        }
    }
    format!("{prefix}:{operation}")
}

fn fix_for(code: &str, action: &str, way_out: &str) -> String {
    let fix = match code {
        "ResourceNotFoundException" | "NotFoundException" if way_out == SKIP_VERIFY => format!(
            "Check the name (the stage's table_prefix and the [backends] names) and the \
             Region{}",
            or_else(way_out)
        ),
        "ResourceNotFoundException" | "NotFoundException" => {
            format!("Check the name and the Region{}", or_else(way_out))
        }
        "AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation" => format!(
            "These credentials may not call {action}: allow it in their IAM policy{}",
            or_else(way_out)
        ),
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "ExpiredTokenException"
        | "ExpiredToken" => "The credentials are not valid for this account and Region: \
                             refresh them or check the profile and the Region."
            .to_string(),
        "ThrottlingException"
        | "ProvisionedThroughputExceededException"
        | "RequestLimitExceeded"
        | "LimitExceededException" => {
            "AWS throttled the calls even after retries: run the verification again later."
                .to_string()
        }
        _ => String::new(),
    };
    if fix.is_empty() {
        String::new()
    } else {
        format!(" {fix}")
    }
}

/// The text of the first `<name>` element of an XML error body.
fn xml_element(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = start + body[start..].find(&format!("</{name}>"))?;
    Some(one_line(&body[start..end])).filter(|t| !t.is_empty())
}

/// `text` on one line and at most 200 characters: a body can be a page.
fn one_line(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}

/// `text` ending with a full stop, so the fix reads as the next sentence.
fn sentence_end(text: &str) -> String {
    if text.ends_with(['.', '!', '?']) {
        text.to_string()
    } else {
        format!("{text}.")
    }
}

/// The deepest cause of an error: the SDK wraps the useful words
/// (`Connection refused (os error 111)`) in layers of context.
pub fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    // An emulator's or proxy's message can be a whole page: keep a sentence.
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

/// Credentials from the default chain, or one or two sentences naming the
/// chain that was tried. `needed_for` says what for (`for verification`),
/// `otherwise` the way out (`or pass --no-verify to skip verification`).
pub async fn credentials(
    config: &aws_config::SdkConfig,
    options: &AwsOptions,
    needed_for: &str,
    otherwise: &str,
) -> Result<Credentials, AwsError> {
    let failed = |message: String| AwsError {
        failure: AwsFailure::Credentials,
        message,
    };
    let Some(provider) = config.credentials_provider() else {
        return Err(failed(format!(
            "No AWS credentials {needed_for}: no credential chain is configured. {}",
            capitalised(&format!("set credentials up, {otherwise}."))
        )));
    };
    provider.provide_credentials().await.map_err(|e| match &e {
        // Every provider in the chain found nothing: say which were asked,
        // not what the last one (instance metadata) said about its token.
        CredentialsError::CredentialsNotLoaded(_) => failed(format!(
            "No AWS credentials {needed_for}: tried {}. {}",
            chain_tried(options),
            capitalised(&format!("set one of them up, {otherwise}."))
        )),
        CredentialsError::ProviderTimedOut(_) => failed(format!(
            "Loading AWS credentials {needed_for} timed out (tried {}). {}",
            chain_tried(options),
            capitalised(&format!("check the profile and the network, {otherwise}."))
        )),
        _ => failed(format!(
            "Loading AWS credentials {needed_for} failed: {}. {}",
            innermost(&e),
            capitalised(&format!("fix the profile or the variables, {otherwise}."))
        )),
    })
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The default chain, in its order, as this machine has it set up.
fn chain_tried(options: &AwsOptions) -> String {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let profile = options
        .profile
        .clone()
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".into());
    let imds_off = env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    format!(
        "environment variables (AWS_ACCESS_KEY_ID), profile `{profile}` (keys, SSO, \
         credential_process), web identity (AWS_WEB_IDENTITY_TOKEN_FILE), the ECS container \
         endpoint and EC2 instance metadata{}",
        if imds_off {
            " (disabled by AWS_EC2_METADATA_DISABLED)"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_name_the_refused_action() {
        assert!(
            fix_for(
                "AccessDeniedException",
                "dynamodb:BatchGetItem",
                SKIP_VERIFY
            )
            .contains("dynamodb:BatchGetItem")
        );
        assert!(fix_for("ResourceNotFoundException", "x", SKIP_VERIFY).contains("--no-verify"));
        assert!(!fix_for("AccessDenied", "iam:GetRole", "").contains("--no-verify"));
        assert_eq!(fix_for("SomethingElse", "x", SKIP_VERIFY), "");
        // API Gateway's calls are authorised by HTTP method.
        assert_eq!(iam_action("apigateway", "GetStage"), "apigateway:GET");
        assert_eq!(iam_action("apigateway", "UpdateStage"), "apigateway:PATCH");
        assert_eq!(
            iam_action("logs", "FilterLogEvents"),
            "logs:FilterLogEvents"
        );
    }

    #[test]
    fn codes_are_read_from_xml_bodies() {
        let body = "<?xml version=\"1.0\"?><ErrorResponse><Errors><Error><Code>AccessDenied</Code>\
                    <Message>User: u is not authorized to perform: dynamodb:DescribeTable</Message>";
        assert_eq!(xml_element(body, "Code").as_deref(), Some("AccessDenied"));
        assert!(
            xml_element(body, "Message")
                .unwrap()
                .ends_with("dynamodb:DescribeTable")
        );
        assert_eq!(xml_element("{}", "Code"), None);
    }

    #[test]
    fn long_causes_are_cut() {
        let long = std::io::Error::other("x".repeat(5000));
        assert!(innermost(&long).chars().count() <= 201);
    }
}
