//! The standard AWS endpoint configuration: `--aws-endpoint` (or
//! `AWS_ENDPOINT_URL`) for every service, a service's own
//! `AWS_ENDPOINT_URL_<SERVICE>` for that one. Here DynamoDB is a second moto
//! process, as DynamoDB Local would be; everything else stays on the first.

use crate::support::sandbox::{Aws, Moto, Sandbox, http, marker, send};
use serde_json::json;

async fn table_names(aws: &Aws) -> Vec<String> {
    aws.dynamodb
        .list_tables()
        .send()
        .await
        .expect("ListTables")
        .table_names()
        .to_vec()
}

#[tokio::test]
async fn dynamodb_on_its_own_endpoint_gets_the_items() {
    let moto = Moto::start();
    let dynamodb = Moto::start();
    let rest = Aws::new(&moto).await;
    let tables = Aws::new(&dynamodb).await;
    let sandbox = Sandbox::launch(
        &moto,
        crate::support::sandbox::Launch {
            env: &[("AWS_ENDPOINT_URL_DYNAMODB", &dynamodb.endpoint)],
            ..Default::default()
        },
    );
    assert!(
        sandbox
            .stderr_text()
            .contains(&format!("DynamoDB on {}", dynamodb.endpoint)),
        "{}",
        sandbox.stderr_text()
    );

    let id = marker("user");
    let created = send(
        &http(),
        "POST",
        &sandbox.url("/test/user"),
        Some(&json!({"Id": id, "Name": "a"}).to_string()),
        &[],
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert!(tables.has_item("test-User", &id).await);
    // The tables were made on the second process only; the API, the functions
    // and their logs on the first.
    assert!(
        table_names(&rest).await.is_empty(),
        "{:?}",
        table_names(&rest).await
    );
    assert!(
        table_names(&tables)
            .await
            .contains(&"test-User".to_string())
    );
    let apis = rest
        .apigateway
        .get_rest_apis()
        .send()
        .await
        .expect("GetRestApis");
    assert!(!apis.items().is_empty());
    let functions = rest
        .lambda
        .list_functions()
        .send()
        .await
        .expect("ListFunctions");
    assert!(!functions.functions().is_empty());
}
