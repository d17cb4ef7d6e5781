//! Per-stage authentication as API Gateway applies it: IAM (SigV4 for
//! `execute-api`, recomputed with `aws-sigv4` and compared) or an API key in
//! `x-api-key`. Keys and secrets are never logged or echoed.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::HeaderMap;

use super::aws::SandboxCredentials;

#[derive(Clone)]
pub enum StageAuth {
    Iam,
    ApiKey { env_var: String, key: String },
}

impl std::fmt::Debug for StageAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StageAuth::Iam => f.write_str("Iam"),
            StageAuth::ApiKey { env_var, .. } => write!(f, "ApiKey(${env_var})"),
        }
    }
}

pub fn parse_auth_specs(
    specs: &[String],
    credentials: &SandboxCredentials,
) -> Result<HashMap<String, StageAuth>, String> {
    let mut out = HashMap::new();
    for spec in specs {
        let (stage, kind) = spec.split_once('=').ok_or_else(|| {
            format!("--auth {spec:?}: expected STAGE=iam or STAGE=api-key:ENVVAR")
        })?;
        let stage = stage.trim();
        if stage.is_empty()
            || !stage
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "--auth {spec:?}: {stage:?} is not a stage name (letters, digits, - and _)"
            ));
        }
        let auth = match kind.trim() {
            "iam" => {
                if !credentials.from_env {
                    return Err(format!(
                        "--auth {stage}=iam checks signatures against AWS_ACCESS_KEY_ID and \
                         AWS_SECRET_ACCESS_KEY, but they are not set in the environment"
                    ));
                }
                StageAuth::Iam
            }
            other => match other.strip_prefix("api-key:") {
                Some(var) if !var.is_empty() => {
                    let key = std::env::var(var).ok().filter(|k| !k.is_empty()).ok_or_else(
                        || format!("--auth {stage}=api-key:{var}: the environment variable {var} is not set"),
                    )?;
                    StageAuth::ApiKey {
                        env_var: var.to_string(),
                        key,
                    }
                }
                _ => {
                    return Err(format!(
                        "--auth {spec:?}: expected STAGE=iam or STAGE=api-key:ENVVAR"
                    ));
                }
            },
        };
        if out.insert(stage.to_string(), auth).is_some() {
            return Err(format!("--auth: stage {stage} is given twice"));
        }
    }
    Ok(out)
}

/// Why API Gateway refused the request, with the body and error type it sends.
#[derive(Debug, Clone, PartialEq)]
pub enum Denied {
    MissingToken,
    Forbidden,
    UnknownAccessKey,
    BadSignature,
    Malformed(String),
    Expired,
}

impl Denied {
    pub fn message(&self) -> String {
        match self {
            Denied::MissingToken => "Missing Authentication Token".into(),
            Denied::Forbidden => "Forbidden".into(),
            Denied::UnknownAccessKey => {
                "The security token included in the request is invalid.".into()
            }
            Denied::BadSignature => "The request signature we calculated does not match the \
                 signature you provided. Check your AWS Secret Access Key and signing method. \
                 Consult the service documentation for details."
                .into(),
            Denied::Malformed(m) => m.clone(),
            Denied::Expired => "Signature expired: the request time (x-amz-date) is more than \
                 5 minutes away from the server's time."
                .into(),
        }
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            Denied::MissingToken => "MissingAuthenticationTokenException",
            Denied::Forbidden => "ForbiddenException",
            Denied::UnknownAccessKey => "UnrecognizedClientException",
            Denied::BadSignature | Denied::Expired => "InvalidSignatureException",
            Denied::Malformed(_) => "IncompleteSignatureException",
        }
    }
}

pub struct RequestParts<'a> {
    pub method: &'a str,
    /// Path and query exactly as the client sent them (the stage segment included).
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

pub fn check(
    auth: &StageAuth,
    req: &RequestParts<'_>,
    credentials: &SandboxCredentials,
    region: &str,
) -> Result<(), Denied> {
    match auth {
        StageAuth::ApiKey { key, .. } => {
            let given = req
                .headers
                .get("x-api-key")
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if constant_time_eq(given, key.as_bytes()) {
                Ok(())
            } else {
                Err(Denied::Forbidden)
            }
        }
        StageAuth::Iam => check_sigv4(req, credentials, region),
    }
}

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, Denied> {
    let malformed = |what: &str| {
        Denied::Malformed(format!(
            "Authorization header requires '{what}' parameter. Authorization=AWS4-HMAC-SHA256"
        ))
    };
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256")
        .ok_or(Denied::MissingToken)?
        .trim();
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential.ok_or_else(|| malformed("Credential"))?;
    let signed = signed.ok_or_else(|| malformed("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| malformed("Signature"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope[..] else {
        return Err(Denied::Malformed(
            "Credential should be scoped to a valid region and service.".into(),
        ));
    };
    if terminator != "aws4_request" {
        return Err(Denied::Malformed(
            "Credential should be scoped with a valid terminator: 'aws4_request'.".into(),
        ));
    }
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

fn check_sigv4(
    req: &RequestParts<'_>,
    credentials: &SandboxCredentials,
    region: &str,
) -> Result<(), Denied> {
    let Some(header) = req.headers.get(http::header::AUTHORIZATION) else {
        return Err(Denied::MissingToken);
    };
    let header = header.to_str().map_err(|_| Denied::MissingToken)?;
    let auth = parse_authorization(header)?;
    if auth.access_key_id != credentials.access_key_id {
        return Err(Denied::UnknownAccessKey);
    }
    if auth.service != "execute-api" {
        return Err(Denied::Malformed(format!(
            "Credential should be scoped to correct service: 'execute-api'. (got '{}')",
            auth.service
        )));
    }
    if auth.region != region {
        return Err(Denied::Malformed(format!(
            "Credential should be scoped to a valid region, not '{}'.",
            auth.region
        )));
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(Denied::Malformed(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    let amz_date = req
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Denied::Malformed(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                    .into(),
            )
        })?;
    let time = parse_amz_date(amz_date)
        .ok_or_else(|| Denied::Malformed(format!("Invalid X-Amz-Date {amz_date:?}")))?;
    if !amz_date.starts_with(auth.date) {
        return Err(Denied::BadSignature);
    }
    let now = SystemTime::now();
    let skew = now
        .duration_since(time)
        .or_else(|_| time.duration_since(now))
        .unwrap_or_default();
    if skew > Duration::from_secs(300) {
        return Err(Denied::Expired);
    }

    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .ok_or(Denied::BadSignature)?;
    let uri = format!("http://{host}{}", req.path_and_query);
    // Only the headers the client said it signed enter the canonical request, as
    // on API Gateway; the signer re-adds x-amz-date from `time` (same value).
    let mut headers: Vec<(&str, &str)> = Vec::new();
    for name in &auth.signed_headers {
        if *name == "x-amz-date" {
            continue;
        }
        for value in req.headers.get_all(*name) {
            let value = value.to_str().map_err(|_| Denied::BadSignature)?;
            headers.push((name, value));
        }
    }
    let identity: Identity = credentials.sdk().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(auth.service)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|_| Denied::BadSignature)?
        .into();
    let signable = SignableRequest::new(
        req.method,
        uri,
        headers.into_iter(),
        SignableBody::Bytes(req.body),
    )
    .map_err(|_| Denied::BadSignature)?;
    let output = sign(signable, &params).map_err(|_| Denied::BadSignature)?;
    if constant_time_eq(output.signature().as_bytes(), auth.signature.as_bytes()) {
        Ok(())
    } else {
        Err(Denied::BadSignature)
    }
}

/// `YYYYMMDD'T'HHMMSS'Z'`.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let year = num(0..4)? as i32;
    let month = time::Month::try_from(num(4..6)? as u8).ok()?;
    let date = time::Date::from_calendar_date(year, month, num(6..8)? as u8).ok()?;
    let t = time::Time::from_hms(num(9..11)? as u8, num(11..13)? as u8, num(13..15)? as u8).ok()?;
    Some(time::PrimitiveDateTime::new(date, t).assume_utc().into())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_amz_dates() {
        let t = parse_amz_date("20240102T030405Z").unwrap();
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        assert_eq!(secs, 1_704_164_645);
        assert!(parse_amz_date("2024-01-02T03:04:05Z").is_none());
    }

    #[test]
    fn parses_the_authorization_header() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/execute-api/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=abcd",
        )
        .ok()
        .unwrap();
        assert_eq!(a.access_key_id, "AKID");
        assert_eq!(a.signed_headers, vec!["host", "x-amz-date"]);
        assert_eq!(a.signature, "abcd");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let auth = StageAuth::ApiKey {
            env_var: "K".into(),
            key: "sekrit".into(),
        };
        assert!(!format!("{auth:?}").contains("sekrit"));
    }
}
