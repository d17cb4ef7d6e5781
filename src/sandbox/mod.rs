//! The local sandbox: API Gateway's data plane and the user-service Lambda
//! functions, emulated on top of moto's control planes, DynamoDB and Logs.
//!
//! The modules follow one request: [`bootstrap`] writes the deployment (and any
//! misconfiguration fault) into moto's control planes; [`routing`] reads it back the
//! way API Gateway and Lambda resolve it; [`dataplane`] serves the stages (auth,
//! throttling, injected faults); [`user_service`] is the function's code; [`logs`]
//! ships its Lambda-style log lines to CloudWatch Logs.

mod auth;
mod aws;
mod bootstrap;
mod dataplane;
mod faults;
mod logs;
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
    /// moto (or AWS-compatible) endpoint for every service.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub aws_endpoint: Option<String>,
    /// Address to serve the stages on, e.g. 127.0.0.1:8080 (port 0: the OS picks).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Inject a fault (repeatable): shared-table, shared-function, drop-writes=P,
    /// error-rate=P, latency=MS[±J], stall=AT:FOR, log-delay=MS, throttle=RPS.
    #[arg(long = "fault", value_name = "NAME[=VALUE]")]
    pub faults: Vec<String>,
    /// Require authentication on a stage (repeatable): STAGE=iam (SigV4 for
    /// execute-api, checked against AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) or
    /// STAGE=api-key:ENVVAR (header x-api-key must equal $ENVVAR).
    #[arg(long = "auth", value_name = "STAGE=iam|api-key:ENVVAR")]
    pub auth: Vec<String>,
    /// Region of the emulated deployment.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// Answer the user routes from memory (an echo) without touching moto's
    /// DynamoDB or Logs: for load benchmarks of a client.
    #[arg(long)]
    pub no_backend: bool,
    /// How long the control-plane configuration (stages, integration, function
    /// environment) is cached before it is read again from moto.
    #[arg(long, default_value = "1s", value_parser = crate::cli::parse_duration)]
    pub config_ttl: Duration,
    /// How often the log shipper sends batches to CloudWatch Logs.
    #[arg(long, default_value = "200ms", value_parser = crate::cli::parse_duration)]
    pub log_interval: Duration,
    /// Invocations whose logs may wait for the shipper; past it, logs are dropped
    /// (and counted) rather than slowing requests down.
    #[arg(long, default_value_t = 100_000)]
    pub log_buffer: usize,
}

/// The sandbox's own failures, each mapped to the crate's exit codes at the edge.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
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

impl From<SandboxError> for crate::Error {
    fn from(err: SandboxError) -> Self {
        match err {
            SandboxError::Aws { .. } => crate::Error::Aws(err.to_string()),
            other => crate::Error::Runtime(other.to_string()),
        }
    }
}

/// The validated arguments: everything the running sandbox needs, checked once.
#[derive(Debug)]
pub struct Options {
    pub endpoint: String,
    pub listen: SocketAddr,
    pub region: String,
    pub faults: Faults,
    pub auth: HashMap<String, StageAuth>,
    pub credentials: aws::SandboxCredentials,
    pub no_backend: bool,
    pub config_ttl: Duration,
    pub log_interval: Duration,
    pub log_buffer: usize,
}

impl Options {
    pub fn from_args(args: SandboxArgs) -> crate::Result<Options> {
        let usage = crate::Error::Usage;
        let endpoint = args
            .aws_endpoint
            .filter(|e| !e.trim().is_empty())
            .ok_or_else(|| {
                usage(
                    "the sandbox needs --aws-endpoint (or AWS_ENDPOINT_URL) pointing at moto: \
                     it creates tables, functions and an API there"
                        .into(),
                )
            })?;
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(usage(format!(
                "--aws-endpoint {endpoint:?} is not a URL (expected e.g. http://127.0.0.1:5000)"
            )));
        }
        let listen: SocketAddr = args.listen.parse().map_err(|_| {
            usage(format!(
                "--listen {:?} is not an address (expected e.g. 127.0.0.1:8080 or 127.0.0.1:0)",
                args.listen
            ))
        })?;
        let faults = Faults::parse(&args.faults).map_err(usage)?;
        let credentials = aws::SandboxCredentials::from_env();
        let auth = auth::parse_auth_specs(&args.auth, &credentials).map_err(usage)?;
        if args.region.trim().is_empty() {
            return Err(usage("--region must not be empty".into()));
        }
        if args.log_buffer == 0 {
            return Err(usage("--log-buffer must be at least 1".into()));
        }
        Ok(Options {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            listen,
            region: args.region,
            faults,
            auth,
            credentials,
            no_backend: args.no_backend,
            config_ttl: args.config_ttl.max(Duration::from_millis(50)),
            log_interval: args.log_interval.max(Duration::from_millis(10)),
            log_buffer: args.log_buffer,
        })
    }
}

pub fn main(args: SandboxArgs) -> crate::Result<()> {
    let options = Options::from_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::Error::Runtime(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(serve(options)).map_err(Into::into)
}

async fn serve(options: Options) -> Result<(), SandboxError> {
    // Bind first so a taken port fails before any AWS call is made.
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| SandboxError::Listen {
            addr: options.listen.to_string(),
            source,
        })?;
    let local = listener
        .local_addr()
        .map_err(|source| SandboxError::Listen {
            addr: options.listen.to_string(),
            source,
        })?;

    let clients = aws::Clients::connect(&options).await;
    let deployment = bootstrap::Deployment::new(&options.region);
    let report = bootstrap::bootstrap(&clients, &deployment, &options.faults).await?;
    eprintln!("sandbox: {report}");

    let resolver = Arc::new(routing::Resolver::new(
        clients.clone(),
        deployment.api_name.clone(),
    ));
    let routes = resolver.refresh().await?;
    eprintln!("sandbox: routing: {}", routes.describe());
    for stage in options.auth.keys() {
        if !routes.stages.contains_key(stage) {
            eprintln!(
                "sandbox: warning: --auth names stage {stage}, which the users API does not have"
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
    );
    let app = dataplane::router(state);

    // An unspecified address is reachable on loopback; that is what we print.
    let shown = if local.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port())
    } else {
        local
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "sandbox listening on http://{shown}");
        let _ = out.flush();
    }

    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    refresher.abort();
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
