//! How requests prove who sends them, as the stage asks: SigV4 for
//! `execute-api` (IAM authorization) or an API key in `x-api-key`. The plan
//! resolves which; the credentials are loaded once before traffic and, when
//! they expire (an assumed role's session, SSO, `credential_process`),
//! fetched again by a thread of their own well before they do, so a run
//! longer than a session never signs with expired keys and the hot path
//! never waits for a refresh; the engine calls [`Auth::apply`] once per
//! request, right after building it.

use std::pin::Pin;
use std::sync::{Arc, RwLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{HeaderValue, Request};
use http_body_util::Full;

use crate::aws::AwsOptions;
use crate::error::Error;

/// API Gateway's header for API keys.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Where `--auth api-key` looks for the key when no variable is named.
pub const DEFAULT_API_KEY_ENV: &str = "STAGECHECK_API_KEY";

/// What `auth` says, in the scenario or on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    None,
    Iam,
    ApiKey,
}

impl AuthKind {
    pub fn parse(text: &str) -> Result<AuthKind, String> {
        match text {
            "none" => Ok(AuthKind::None),
            "iam" => Ok(AuthKind::Iam),
            "api-key" => Ok(AuthKind::ApiKey),
            other => Err(format!(
                "unknown auth {other:?} (expected \"iam\", \"api-key\" or \"none\")"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AuthKind::None => "none",
            AuthKind::Iam => "iam",
            AuthKind::ApiKey => "api-key",
        }
    }
}

/// The resolved authentication of a run.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    /// The key's value, marked sensitive so hyper and `Debug` never show it.
    ApiKey {
        env_var: String,
        key: HeaderValue,
    },
    Iam(Box<Iam>),
}

/// SigV4 signing for `execute-api`.
#[derive(Clone)]
pub struct Iam {
    /// `https://host[:port]`: the URL the signature covers is the real host
    /// and path, custom domain names included.
    pub origin: String,
    /// From the host (`{id}.execute-api.{region}.amazonaws.com`) or `--region`;
    /// otherwise the credential chain's Region, filled in by [`Auth::load`].
    pub region: Option<String>,
    /// Filled in by [`Auth::load`] before traffic, replaced by the refresher
    /// before it expires; shared by every clone of the plan's `Auth`.
    identity: Arc<RwLock<Option<Identity>>>,
}

impl std::fmt::Debug for Auth {
    // Never the key or the credentials, only where they come from.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::ApiKey { env_var, .. } => write!(f, "ApiKey(${env_var})"),
            Auth::Iam(iam) => write!(f, "Iam(region {:?})", iam.region),
        }
    }
}

impl Auth {
    pub fn kind(&self) -> AuthKind {
        match self {
            Auth::None => AuthKind::None,
            Auth::ApiKey { .. } => AuthKind::ApiKey,
            Auth::Iam(_) => AuthKind::Iam,
        }
    }

    /// SigV4 for the target at `origin`; the Region from the host when it is
    /// an execute-api host, else `region` (the command line's).
    pub fn iam(origin: String, host: &str, region: Option<String>) -> Auth {
        Auth::Iam(Box::new(Iam {
            origin,
            region: region_from_host(host).or(region),
            identity: Arc::new(RwLock::new(None)),
        }))
    }

    /// Reads the key from the environment; an error (naming the variable,
    /// never a value) when it is unset or empty.
    pub fn api_key(env_var: &str) -> Result<Auth, String> {
        let key = std::env::var(env_var).ok().filter(|k| !k.is_empty());
        let Some(key) = key else {
            return Err(format!(
                "the API key is read from the environment variable {env_var}, which is not set \
                 (export it, or name another with --api-key-env or api_key_env)"
            ));
        };
        let mut value = HeaderValue::from_str(key.trim()).map_err(|_| {
            format!("the API key in {env_var} is not a valid header value (the value is not shown)")
        })?;
        value.set_sensitive(true);
        Ok(Auth::ApiKey {
            env_var: env_var.to_string(),
            key: value,
        })
    }

    /// The API key's value, for redaction.
    pub fn secret_value(&self) -> Option<String> {
        match self {
            Auth::ApiKey { key, .. } => key.to_str().ok().map(str::to_string),
            _ => None,
        }
    }

    /// Loads credentials (and, when still unknown, the Region) from the
    /// default chain with the run's `--region/--profile/--aws-endpoint`.
    /// Once, before any traffic: a missing credential is one clear error, not
    /// a run of 403s.
    pub async fn load(&mut self, aws: &AwsOptions) -> Result<(), Error> {
        let Auth::Iam(iam) = self else {
            return Ok(());
        };
        let config = crate::aws::config(aws).await;
        if iam.region.is_none() {
            iam.region = config.region().map(|r| r.to_string());
        }
        if iam.region.is_none() {
            return Err(Error::Usage(format!(
                "auth iam: cannot tell which Region to sign for ({} is not an \
                 execute-api host): pass --region",
                iam.origin
            )));
        }
        let credentials = crate::aws::credentials(
            &config,
            aws,
            "to sign requests with (auth iam)",
            "or run with a role",
        )
        .await?;
        let expiry = credentials.expiry();
        if let Ok(mut cell) = iam.identity.write() {
            *cell = Some(credentials.into());
        }
        if let (Some(expiry), Some(provider)) = (expiry, config.credentials_provider()) {
            spawn_refresher(provider, Arc::downgrade(&iam.identity), expiry);
        }
        Ok(())
    }

    /// Adds what the stage needs to `request`: SigV4 headers (over the method,
    /// the real host and path, the query, the headers and the body) or the
    /// API key. On the hot path: nothing is done for `None`.
    pub fn apply(&self, request: &mut Request<Full<Bytes>>) {
        match self {
            Auth::None => {}
            Auth::ApiKey { key, .. } => {
                request.headers_mut().insert(API_KEY_HEADER, key.clone());
            }
            Auth::Iam(iam) => {
                // Should signing fail (it cannot for a request we built), the
                // request goes unsigned and the stage's 403 shows in the report.
                let _ = iam.sign(request, SystemTime::now());
            }
        }
    }
}

impl Iam {
    fn sign(&self, request: &mut Request<Full<Bytes>>, time: SystemTime) -> Option<()> {
        // A clone under the read lock (an Arc inside): the refresher's
        // write never waits on a signature being computed.
        let identity = self.identity.read().ok()?.clone()?;
        let region = self.region.as_deref()?;
        let body = body_bytes(request.body())?;
        let url = format!("{}{}", self.origin, request.uri());
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("execute-api")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .ok()?
            .into();
        let headers: Vec<(&str, &str)> = request
            .headers()
            .iter()
            .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
            .collect();
        let signable = SignableRequest::new(
            request.method().as_str(),
            &url,
            headers.into_iter(),
            SignableBody::Bytes(&body),
        )
        .ok()?;
        let (instructions, _) = sign(signable, &params).ok()?.into_parts();
        instructions.apply_to_request_http1x(request);
        for name in [http::header::AUTHORIZATION.as_str(), "x-amz-security-token"] {
            if let Some(v) = request.headers_mut().get_mut(name) {
                v.set_sensitive(true);
            }
        }
        Some(())
    }
}

/// When to fetch credentials again: halfway through what is left of their
/// life, and never later than five minutes before they expire (the SDK's
/// own margin), so a failed fetch has time to be retried.
pub fn refresh_at(now: SystemTime, expiry: SystemTime) -> SystemTime {
    let left = expiry.duration_since(now).unwrap_or_default();
    let before = (left / 2).min(Duration::from_secs(300));
    expiry.checked_sub(before).unwrap_or(now).max(now)
}

/// A thread that fetches new credentials before the current ones expire
/// and swaps them in; it ends when the run's `Auth` is gone. A failed fetch
/// is retried every few seconds and said once on stderr.
fn spawn_refresher(
    provider: SharedCredentialsProvider,
    cell: Weak<RwLock<Option<Identity>>>,
    mut expiry: SystemTime,
) {
    let spawned = std::thread::Builder::new()
        .name("sigv4-credentials".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            let mut warned = false;
            let mut due = refresh_at(SystemTime::now(), expiry);
            loop {
                // Wake at least once a second to notice the run has ended.
                while SystemTime::now() < due {
                    if cell.strong_count() == 0 {
                        return;
                    }
                    let wait = due
                        .duration_since(SystemTime::now())
                        .unwrap_or_default()
                        .min(Duration::from_secs(1));
                    std::thread::sleep(wait);
                }
                let Some(cell) = cell.upgrade() else { return };
                match runtime.block_on(provider.provide_credentials()) {
                    Ok(fresh) => {
                        let next = fresh.expiry();
                        if let Ok(mut slot) = cell.write() {
                            *slot = Some(fresh.into());
                        }
                        let Some(next) = next else { return };
                        expiry = next;
                        due = refresh_at(SystemTime::now(), expiry);
                    }
                    Err(e) => {
                        if !warned {
                            eprintln!(
                                "refreshing the signing credentials failed ({}); retrying until \
                                 they expire at {}",
                                crate::aws::innermost(&e),
                                humantime::format_rfc3339_seconds(expiry)
                            );
                            warned = true;
                        }
                        due = SystemTime::now() + Duration::from_secs(3);
                    }
                }
            }
        });
    // Without the thread the run still signs, until the credentials expire.
    if let Err(e) = spawned {
        eprintln!("cannot start the credentials refresher: {e}");
    }
}

/// The bytes of a request body that is already whole in memory: `Full`
/// yields its one frame at the first poll, so no runtime is needed.
fn body_bytes(body: &Full<Bytes>) -> Option<Bytes> {
    use hyper::body::Body as _;
    let mut body = body.clone();
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut body).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().ok(),
        Poll::Ready(None) => Some(Bytes::new()),
        _ => None,
    }
}

/// The Region in an API Gateway host name: `{id}.execute-api.{region}.amazonaws.com`
/// (also `.amazonaws.com.cn` and VPC endpoints' `….execute-api.{region}.vpce.amazonaws.com`).
/// A custom domain says nothing: `None`.
pub fn region_from_host(host: &str) -> Option<String> {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let at = labels.iter().position(|l| *l == "execute-api")?;
    let region = *labels.get(at + 1)?;
    let rest = &labels[at + 2..];
    let looks_like_region = region.contains('-')
        && region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        && region.chars().last().is_some_and(|c| c.is_ascii_digit());
    (looks_like_region && rest.contains(&"amazonaws")).then(|| region.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn region_comes_from_execute_api_hosts_only() {
        let r = |h| region_from_host(h);
        assert_eq!(
            r("abc123.execute-api.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            r("ABC.Execute-Api.us-gov-west-1.amazonaws.com.").as_deref(),
            Some("us-gov-west-1")
        );
        assert_eq!(
            r("abc.execute-api.cn-north-1.amazonaws.com.cn").as_deref(),
            Some("cn-north-1")
        );
        assert_eq!(
            r("abc-vpce-0123.execute-api.ap-south-1.vpce.amazonaws.com").as_deref(),
            Some("ap-south-1")
        );
        assert_eq!(r("api.example.com"), None);
        assert_eq!(r("127.0.0.1"), None);
        assert_eq!(r("execute-api.example.com"), None);
        assert_eq!(r("x.execute-api"), None);
    }

    #[test]
    fn credentials_are_refreshed_halfway_and_at_most_five_minutes_early() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |left: u64| {
            refresh_at(now, now + Duration::from_secs(left))
                .duration_since(now)
                .unwrap()
                .as_secs()
        };
        assert_eq!(at(20), 10);
        assert_eq!(at(3600), 3300);
        assert_eq!(at(600), 300);
        assert_eq!(at(0), 0);
        // Already expired: now.
        assert_eq!(refresh_at(now, now - Duration::from_secs(5)), now);
    }

    #[test]
    fn signing_covers_host_path_query_and_body() {
        let mut auth = Auth::iam(
            "https://api.example.com".into(),
            "api.example.com",
            Some("eu-west-1".into()),
        );
        if let Auth::Iam(iam) = &mut auth {
            *iam.identity.write().unwrap() = Some(
                aws_credential_types::Credentials::new("AKID", "SECRET", None, None, "t").into(),
            );
        }
        let build = |body: &'static str| {
            let mut r = Request::builder()
                .method("POST")
                .uri("/v1/user?x=1")
                .header("host", "api.example.com")
                .body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap();
            if let Auth::Iam(iam) = &auth {
                iam.sign(&mut r, SystemTime::UNIX_EPOCH).unwrap();
            }
            r.headers()["authorization"].to_str().unwrap().to_string()
        };
        let a = build("{\"a\":1}");
        assert!(
            a.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKID/19700101/eu-west-1/execute-api/aws4_request"
            ),
            "{a}"
        );
        assert!(a.contains("host"), "{a}");
        assert_ne!(a, build("{\"a\":2}"), "the body is part of the signature");
        assert!(!format!("{auth:?}").contains("SECRET"));
    }

    #[test]
    fn api_key_debug_hides_the_key() {
        let mut key = HeaderValue::from_static("k-very-secret-value");
        key.set_sensitive(true);
        let auth = Auth::ApiKey {
            env_var: "K".into(),
            key,
        };
        assert_eq!(format!("{auth:?}"), "ApiKey($K)");
        assert!(Auth::api_key("STAGECHECK_UNIT_TEST_KEY_NEVER_SET").is_err());
    }

    proptest! {
        #[test]
        fn region_parsing_never_panics(host in ".{0,80}") {
            let _ = region_from_host(&host);
        }

        #[test]
        fn any_region_round_trips(
            id in "[a-z0-9]{10}",
            region in "(us|eu|ap|sa|ca|me|af)-(east|west|north|south|central|southeast)-[1-9]",
        ) {
            let host = format!("{id}.execute-api.{region}.amazonaws.com");
            prop_assert_eq!(region_from_host(&host), Some(region));
        }
    }
}
