//! AWS clients from the standard configuration chain (environment, profiles,
//! SSO), with `--region`, `--profile` and `--aws-endpoint` on top;
//! `AWS_ENDPOINT_URL` and its per-service forms are honoured by the loader.

use aws_config::BehaviorVersion;

use crate::scenario::AwsOptions;

#[derive(Clone)]
pub struct Clients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
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
    pub async fn new(options: &AwsOptions) -> Clients {
        let config = config(options).await;
        Clients {
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            logs: aws_sdk_cloudwatchlogs::Client::new(&config),
        }
    }
}

/// The SDK's error with its whole chain of causes, for one readable line.
pub fn describe<E: std::error::Error>(error: &E) -> String {
    aws_smithy_types::error::display::DisplayErrorContext(error).to_string()
}
