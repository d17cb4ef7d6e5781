//! The local sandbox: API Gateway's data plane and the user-service Lambda
//! functions, emulated on top of moto's control planes, DynamoDB and Logs.
//!
//! The modules follow one request: [`bootstrap`] writes the deployment (and any
//! misconfiguration fault) into moto's control planes; [`routing`] reads it back the
//! way API Gateway and Lambda resolve it; [`dataplane`] serves the stages (auth,
//! throttling, the function's resource policy, injected faults) and writes their
//! execution and access logs ([`apigw_logs`]); [`lambda`] keeps the functions'
//! execution environments; [`user_service`] is the function's code, its calls
//! judged by [`policy`] against its execution role; [`logs`] ships every log
//! line to CloudWatch Logs.

mod apigw_logs;
mod auth;
mod aws;
mod bootstrap;
mod dataplane;
mod deployments;
mod endpoint;
mod faults;
mod lambda;
mod logs;
mod policy;
mod routing;
mod user_service;
mod zip;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

pub use auth::StageAuth;
pub use faults::Faults;

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// moto (or AWS-compatible) endpoint for every service; a service's own
    /// AWS_ENDPOINT_URL_<SERVICE> (e.g. AWS_ENDPOINT_URL_DYNAMODB for DynamoDB Local)
    /// takes precedence for that service, as in the AWS SDKs.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint: Option<String>,
    /// Address to serve the stages on, e.g. 127.0.0.1:8080 (port 0: the OS picks).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Address of the sandbox's AWS endpoint (point AWS_ENDPOINT_URL at it): every
    /// call passes to moto, except the API Gateway and Lambda operations moto gets
    /// wrong (deployments as snapshots, canaries, exports, LoggingConfig), which it
    /// answers as AWS does. Port 0 (the default): the OS picks; printed at start.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub aws_listen: String,
    /// Inject a fault (repeatable): shared-table, shared-function, drop-writes=P,
    /// error-rate=P, latency=MS[±J], stall=AT:FOR, log-delay=MS, throttle=RPS.
    #[arg(long = "fault", value_name = "NAME[=VALUE]")]
    pub faults: Vec<String>,
    /// Require authentication on a stage (repeatable): STAGE=iam (SigV4 for
    /// execute-api, checked against AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) or
    /// STAGE=api-key:ENVVAR (header x-api-key must equal $ENVVAR).
    #[arg(long = "auth", value_name = "STAGE=iam|api-key:ENVVAR")]
    pub auth: Vec<String>,
    /// What a stage's function writes as its own log line, inside Lambda's
    /// log format (repeatable): STAGE=stagecheck (the client's X-Correlation-Id
    /// and API Gateway's request id, the default; `full` is accepted too) or
    /// STAGE=powertools (AWS Lambda Powertools' Logger JSON: only API Gateway's
    /// request id, as `correlation_id`) or STAGE=plain (its message only: no id
    /// but Lambda's own request id).
    #[arg(
        long = "function-log",
        value_name = "STAGE=stagecheck|powertools|plain"
    )]
    pub function_log: Vec<String>,
    /// How long a new Lambda execution environment's init phase takes: the
    /// first request an environment serves waits for it (a cold start).
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub cold_start: Duration,
    /// How long an idle execution environment is kept before it is reaped
    /// (the next request then starts a new one).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Region of the emulated deployment.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Answer the user routes from memory (an echo) without touching moto's
    /// DynamoDB or Logs: for load benchmarks of a client.
    #[arg(long)]
    pub no_backend: bool,
    /// How long the control-plane configuration (stages, integration, function
    /// environment) is cached before it is read again from moto.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub config_ttl: Duration,
    /// How often the log shipper sends batches to CloudWatch Logs.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub log_interval: Duration,
    /// Invocations whose logs may wait for the shipper; past it, logs are dropped
    /// (and counted) rather than slowing requests down.
    #[arg(long, default_value_t = 100_000)]
    pub log_buffer: usize,
}

/// The sandbox's own failures; [`SandboxError::exit_code`] maps them to the exit
/// codes stagecheck documents (2 usage, 3 runtime).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    Usage(String),
    #[error("{action}: {message}")]
    Aws { action: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Runtime(String),
}

impl SandboxError {
    pub fn exit_code(&self) -> i32 {
        match self {
            SandboxError::Usage(_) => 2,
            _ => 3,
        }
    }
}

/// Durations as users write them elsewhere in stagecheck: `30s`, `2m`, `250ms`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration ({e}); write e.g. 250ms, 30s or 2m"))
}

/// A time as RFC 3339 (`2026-12-02T00:00:00Z`), as AWS writes dates in JSON.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `%XX` escapes decoded (a `%` not followed by two hex digits stays), as
/// URL paths carry them: path parameters, the AWS endpoint's path segments.
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Form encoding (query strings, IAM's URL-encoded policy documents): `+` is
/// a space, then `%XX` escapes (so `%2B` is still a `+`).
pub(crate) fn form_decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

/// The validated arguments: everything the running sandbox needs, checked once.
#[derive(Debug)]
pub struct Options {
    pub endpoints: aws::Endpoints,
    pub listen: SocketAddr,
    pub aws_listen: SocketAddr,
    pub region: String,
    pub faults: Faults,
    pub auth: HashMap<String, StageAuth>,
    pub function_logs: HashMap<String, logs::FunctionLog>,
    pub credentials: aws::SandboxCredentials,
    pub no_backend: bool,
    pub config_ttl: Duration,
    pub log_interval: Duration,
    pub log_buffer: usize,
    pub lambda: lambda::LambdaSettings,
}

impl Options {
    pub fn from_args(args: SandboxArgs) -> Result<Options, SandboxError> {
        let usage = SandboxError::Usage;
        let endpoints = aws::Endpoints::resolve(args.aws_endpoint.as_deref(), |name| {
            std::env::var(name).ok()
        })
        .map_err(usage)?;
        let listen: SocketAddr = args.listen.parse().map_err(|_| {
            usage(format!(
                "--listen {:?} is not an address (expected e.g. 127.0.0.1:8080 or 127.0.0.1:0)",
                args.listen
            ))
        })?;
        let aws_listen: SocketAddr = args.aws_listen.parse().map_err(|_| {
            usage(format!(
                "--aws-listen {:?} is not an address (expected e.g. 127.0.0.1:4566 or 127.0.0.1:0)",
                args.aws_listen
            ))
        })?;
        let faults = Faults::parse(&args.faults).map_err(usage)?;
        let credentials = aws::SandboxCredentials::from_env();
        let auth = auth::parse_auth_specs(&args.auth, &credentials).map_err(usage)?;
        let function_logs = parse_function_logs(&args.function_log).map_err(usage)?;
        if args.region.trim().is_empty() {
            return Err(usage("--region must not be empty".into()));
        }
        if args.log_buffer == 0 {
            return Err(usage("--log-buffer must be at least 1".into()));
        }
        Ok(Options {
            endpoints,
            listen,
            aws_listen,
            region: args.region,
            faults,
            auth,
            function_logs,
            credentials,
            no_backend: args.no_backend,
            config_ttl: args.config_ttl.max(Duration::from_millis(50)),
            log_interval: args.log_interval.max(Duration::from_millis(10)),
            log_buffer: args.log_buffer,
            lambda: lambda::LambdaSettings {
                cold_start: args.cold_start,
                idle_timeout: args.idle_timeout,
            },
        })
    }
}

fn parse_function_logs(specs: &[String]) -> Result<HashMap<String, logs::FunctionLog>, String> {
    let mut shapes = HashMap::new();
    for spec in specs {
        let parsed = spec
            .split_once('=')
            .and_then(|(stage, shape)| {
                Some((stage.trim(), logs::FunctionLog::parse(shape.trim())?))
            })
            .filter(|(stage, _)| !stage.is_empty());
        let Some((stage, shape)) = parsed else {
            return Err(format!(
                "--function-log {spec:?}: expected STAGE=stagecheck, STAGE=powertools or STAGE=plain"
            ));
        };
        shapes.insert(stage.to_string(), shape);
    }
    Ok(shapes)
}

pub fn main(args: SandboxArgs) -> Result<(), SandboxError> {
    let options = Options::from_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| SandboxError::Runtime(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve(options))
}

/// Binds `addr`, returning the listener and the address to print (an
/// unspecified address is reachable on loopback: that is what is shown).
async fn bind(addr: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), SandboxError> {
    let failed = |source| SandboxError::Listen {
        addr: addr.to_string(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(failed)?;
    let local = listener.local_addr().map_err(failed)?;
    let shown = if local.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port())
    } else {
        local
    };
    Ok((listener, shown))
}

async fn serve(options: Options) -> Result<(), SandboxError> {
    // Bind first so a taken port fails before any AWS call is made.
    let (listener, shown) = bind(options.listen).await?;
    let (aws_listener, aws_shown) = bind(options.aws_listen).await?;

    let clients = aws::Clients::connect(&options).await;
    eprintln!("sandbox: AWS endpoints: {}", options.endpoints.describe());
    let overlay = Arc::new(deployments::Overlay::default());
    let deployment = bootstrap::Deployment::new(&options.region);
    let report = bootstrap::bootstrap(&clients, &overlay, &deployment, &options.faults).await?;
    eprintln!("sandbox: {report}");

    let resolver = Arc::new(routing::Resolver::new(
        clients.clone(),
        deployment.api_name.clone(),
        options.region.clone(),
        overlay.clone(),
    ));
    let routes = resolver.refresh().await?;
    eprintln!("sandbox: routing: {}", routes.describe());
    let named = (options.auth.keys().map(|s| ("--auth", s)))
        .chain(options.function_logs.keys().map(|s| ("--function-log", s)));
    for (flag, stage) in named {
        if !routes.stages.contains_key(stage) {
            eprintln!(
                "sandbox: warning: {flag} names stage {stage}, which the users API does not have"
            );
        }
    }
    let refresher = tokio::spawn(routing::refresh_every(resolver.clone(), options.config_ttl));

    let (log_sink, shipper) = if options.no_backend {
        (logs::LogSink::disabled(), None)
    } else {
        let (sink, shipper) = logs::channel(
            clients.logs.clone(),
            options.log_buffer,
            options.log_interval,
            options.faults.log_delay,
        );
        (sink, Some(shipper.start()))
    };

    let state = dataplane::Dataplane::new(
        resolver,
        if options.no_backend {
            user_service::UserService::echo()
        } else {
            user_service::UserService::dynamodb(clients.dynamodb.clone())
        },
        log_sink.clone(),
        faults::FaultState::new(options.faults.clone()),
        options.auth.clone(),
        options.credentials.clone(),
        options.region.clone(),
    )
    .with_function_logs(options.function_logs.clone())
    .with_lambda(options.lambda);
    let app = dataplane::router(state);

    let aws_app = endpoint::router(
        endpoint::AwsEndpoint::new(
            overlay,
            clients.clone(),
            options.endpoints.clone(),
            options.region.clone(),
        )
        .with_empty_log_pages(options.faults.empty_log_pages),
    );
    let aws_server = tokio::spawn(async move {
        if let Err(e) = axum::serve(aws_listener, aws_app).await {
            eprintln!("sandbox: the AWS endpoint failed: {e}");
        }
    });

    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "aws endpoint on http://{aws_shown}");
        let _ = writeln!(out, "sandbox listening on http://{shown}");
        let _ = out.flush();
    }

    // The peer address is the access log's $context.identity.sourceIp.
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await;
    refresher.abort();
    aws_server.abort();
    if let Some(shipper) = shipper {
        eprintln!("sandbox: stopping, flushing logs");
        shipper.stop(Duration::from_secs(10)).await;
    }
    served.map_err(|e| SandboxError::Runtime(format!("the server failed: {e}")))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
