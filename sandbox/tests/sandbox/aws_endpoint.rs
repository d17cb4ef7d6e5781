//! The sandbox's AWS endpoint passes everything through to moto and answers
//! the operations moto gets wrong as AWS does: LoggingConfig kept, CreateStage
//! checks its deployment and takes canarySettings, exports per type.

use crate::support::sandbox::{Aws, Moto, Sandbox};
use aws_sdk_lambda::types::{LogFormat, LoggingConfig};

#[tokio::test]
async fn other_services_pass_through_unchanged() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let aws = Aws::of(&sandbox).await;
    let tables = aws.dynamodb.list_tables().send().await.expect("ListTables");
    let mut names = tables.table_names().to_vec();
    names.sort();
    assert_eq!(names, ["User", "test-User"]);
    let groups = aws
        .logs
        .describe_log_groups()
        .log_group_name_prefix("/aws/lambda/")
        .send()
        .await
        .expect("DescribeLogGroups");
    assert_eq!(groups.log_groups().len(), 2);
    let roles = aws.iam.list_roles().send().await.expect("ListRoles");
    assert!(
        roles
            .roles()
            .iter()
            .any(|r| r.role_name() == "test-user-service-role")
    );
}

#[tokio::test]
async fn logging_config_is_kept_as_lambda_keeps_it() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let aws = Aws::of(&sandbox).await;
    let before = aws
        .lambda
        .get_function_configuration()
        .function_name("test-user-service")
        .send()
        .await
        .expect("GetFunctionConfiguration");
    assert_eq!(
        before.logging_config().and_then(|l| l.log_format()),
        Some(&LogFormat::Text)
    );
    aws.lambda
        .update_function_configuration()
        .function_name("test-user-service")
        .logging_config(LoggingConfig::builder().log_format(LogFormat::Json).build())
        .send()
        .await
        .expect("UpdateFunctionConfiguration");
    let after = aws
        .lambda
        .get_function()
        .function_name("arn:aws:lambda:us-east-1:123456789012:function:test-user-service")
        .send()
        .await
        .expect("GetFunction");
    let logging = after
        .configuration()
        .and_then(|c| c.logging_config())
        .expect("LoggingConfig");
    assert_eq!(logging.log_format(), Some(&LogFormat::Json));
    assert_eq!(logging.log_group(), Some("/aws/lambda/test-user-service"));
    // The other function is untouched; moto alone keeps nothing.
    let other = aws
        .lambda
        .get_function_configuration()
        .function_name("user-service")
        .send()
        .await
        .expect("GetFunctionConfiguration");
    assert_eq!(
        other.logging_config().and_then(|l| l.log_format()),
        Some(&LogFormat::Text)
    );
    let direct = Aws::new(&moto).await;
    let raw = direct
        .lambda
        .get_function_configuration()
        .function_name("test-user-service")
        .send()
        .await
        .expect("moto");
    assert_ne!(
        raw.logging_config().and_then(|l| l.log_format()),
        Some(&LogFormat::Json),
        "moto stores LoggingConfig now: the endpoint's copy may no longer be needed"
    );
}

#[tokio::test]
async fn create_stage_checks_the_deployment_and_takes_a_canary() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &[]);
    let aws = Aws::of(&sandbox).await;
    let ag = &aws.apigateway;
    let apis = ag.get_rest_apis().send().await.expect("GetRestApis");
    let api = apis.items()[0].id().expect("id").to_string();
    let err = ag
        .create_stage()
        .rest_api_id(&api)
        .stage_name("qa")
        .deployment_id("nope00")
        .send()
        .await
        .expect_err("an unknown deployment");
    assert!(
        err.as_service_error()
            .is_some_and(|e| e.is_not_found_exception()),
        "{err:?}"
    );
    let d = ag
        .create_deployment()
        .rest_api_id(&api)
        .send()
        .await
        .expect("CreateDeployment");
    let id = d.id().expect("id");
    let stage = ag
        .create_stage()
        .rest_api_id(&api)
        .stage_name("qa")
        .deployment_id(id)
        .variables("env", "test-")
        .canary_settings(
            aws_sdk_apigateway::types::CanarySettings::builder()
                .percent_traffic(10.0)
                .deployment_id(id)
                .build(),
        )
        .send()
        .await
        .expect("CreateStage");
    assert_eq!(
        stage.canary_settings().map(|c| c.percent_traffic()),
        Some(10.0)
    );
    let listed = ag
        .get_stages()
        .rest_api_id(&api)
        .send()
        .await
        .expect("GetStages");
    let qa = listed
        .item()
        .iter()
        .find(|s| s.stage_name() == Some("qa"))
        .expect("qa");
    assert_eq!(
        qa.canary_settings().and_then(|c| c.deployment_id()),
        Some(id)
    );

    let swagger = ag
        .get_export()
        .rest_api_id(&api)
        .stage_name("qa")
        .export_type("swagger")
        .send()
        .await
        .expect("GetExport swagger");
    let doc: serde_json::Value =
        serde_json::from_slice(swagger.body().expect("body").as_ref()).expect("JSON");
    assert_eq!(doc["swagger"], "2.0");
    assert_eq!(doc["basePath"], "/qa");
    let any = &doc["paths"]["/user"]["x-amazon-apigateway-any-method"];
    assert!(any.is_object(), "{doc}");
    assert!(
        any.get("x-amazon-apigateway-integration").is_none(),
        "integrations only when asked for"
    );
}
