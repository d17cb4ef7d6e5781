//! Stage auth: SigV4 for execute-api verified for real against the sandbox's
//! credentials, and API keys; other stages stay open.

use std::time::SystemTime;

use crate::support::sandbox::{
    ACCESS_KEY_ID, Launch, Moto, REGION, SECRET_ACCESS_KEY, Sandbox, http, send,
};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use serde_json::json;

/// The headers a SigV4 client adds for this request.
fn signed_headers(
    method: &str,
    url: &str,
    body: &str,
    access_key: &str,
    secret: &str,
) -> Vec<(String, String)> {
    let identity: Identity =
        aws_credential_types::Credentials::new(access_key, secret, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("execute-api")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        [("content-type", "application/json")].into_iter(),
        SignableBody::Bytes(body.as_bytes()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let (headers, _) = instructions.into_parts();
    let mut out: Vec<(String, String)> = headers
        .into_iter()
        .map(|h| (h.name().to_string(), h.value().to_string()))
        .collect();
    out.push(("content-type".into(), "application/json".into()));
    out
}

async fn send_signed(
    method: &str,
    url: &str,
    body: &str,
    headers: &[(String, String)],
) -> crate::support::sandbox::Answer {
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = (!body.is_empty()).then_some(body);
    send(&http(), method, url, body, &h).await
}

#[tokio::test]
async fn iam_stage_accepts_only_valid_signatures() {
    let moto = Moto::start();
    let sandbox = Sandbox::start(&moto, &[], &["--auth", "test=iam"]);
    let create = sandbox.url("/test/user");
    let body = r#"{"name":"signed"}"#;

    let ok = send_signed(
        "POST",
        &create,
        body,
        &signed_headers("POST", &create, body, ACCESS_KEY_ID, SECRET_ACCESS_KEY),
    )
    .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    let id = ok.body["Id"].as_str().expect("Id").to_string();
    let get = sandbox.url(&format!("/test/user/{id}?fields=all"));
    let signed_get = signed_headers("GET", &get, "", ACCESS_KEY_ID, SECRET_ACCESS_KEY);
    let got = send_signed("GET", &get, "", &signed_get).await;
    assert_eq!(got.status, 200, "{}", got.body);

    let unsigned = send(&http(), "POST", &create, Some(body), &[]).await;
    assert_eq!(unsigned.status, 403);
    assert_eq!(
        unsigned.body,
        json!({"message": "Missing Authentication Token"})
    );

    let mismatch = "The request signature we calculated does not match the signature you provided";
    let wrong_secret = send_signed(
        "POST",
        &create,
        body,
        &signed_headers("POST", &create, body, ACCESS_KEY_ID, "not-the-secret"),
    )
    .await;
    assert_eq!(wrong_secret.status, 403);
    assert!(
        wrong_secret.message().starts_with(mismatch),
        "{}",
        wrong_secret.body
    );

    let wrong_key = send_signed(
        "POST",
        &create,
        body,
        &signed_headers("POST", &create, body, "AKIDSOMEONEELSE", SECRET_ACCESS_KEY),
    )
    .await;
    assert_eq!(wrong_key.status, 403);

    let tampered_body = send_signed(
        "POST",
        &create,
        r#"{"name":"tampered"}"#,
        &signed_headers("POST", &create, body, ACCESS_KEY_ID, SECRET_ACCESS_KEY),
    )
    .await;
    assert_eq!(tampered_body.status, 403);
    assert!(tampered_body.message().starts_with(mismatch));

    let other = sandbox.url("/test/user/someone-else");
    let tampered_path = send_signed("GET", &other, "", &signed_get).await;
    assert_eq!(tampered_path.status, 403);
    assert!(tampered_path.message().starts_with(mismatch));

    // Signed for another stage's path: the stage segment is part of what is signed.
    let prod_get = sandbox.url(&format!("/prod/user/{id}?fields=all"));
    let cross = send_signed(
        "GET",
        &get,
        "",
        &signed_headers("GET", &prod_get, "", ACCESS_KEY_ID, SECRET_ACCESS_KEY),
    )
    .await;
    assert_eq!(cross.status, 403);

    // prod has no auth.
    let open = send(&http(), "GET", &sandbox.url("/prod/user/none"), None, &[]).await;
    assert_eq!(open.status, 404);
    assert!(!sandbox.stderr_text().contains(SECRET_ACCESS_KEY));
}

#[tokio::test]
async fn api_key_stage_needs_the_key() {
    let moto = Moto::start();
    let key = "k-123456789-secret";
    let sandbox = Sandbox::launch(
        &moto,
        Launch {
            faults: &[],
            args: &["--auth", "prod=api-key:STAGECHECK_TEST_KEY"],
            env: &[("STAGECHECK_TEST_KEY", key)],
        },
    );
    let url = sandbox.url("/prod/user/none");
    let ok = send(&http(), "GET", &url, None, &[("x-api-key", key)]).await;
    assert_eq!(ok.status, 404);
    for headers in [
        vec![],
        vec![("x-api-key", "wrong")],
        vec![("x-api-key", "")],
    ] {
        let denied = send(&http(), "GET", &url, None, &headers).await;
        assert_eq!(denied.status, 403, "{headers:?}");
        assert_eq!(denied.body, json!({"message": "Forbidden"}));
    }
    let open = send(&http(), "GET", &sandbox.url("/test/user/none"), None, &[]).await;
    assert_eq!(open.status, 404);
    assert!(!sandbox.stderr_text().contains(key));
}
