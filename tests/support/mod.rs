//! Shared helpers for the integration tests: every test spawns the real
//! binary against real local servers and checks what the server saw.
#![allow(dead_code)]

/// moto, the sandbox and SDK clients: the sandbox crate's own test harness.
#[path = "../../sandbox/tests/support/harness.rs"]
pub mod sandbox;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};

/// The binary under test, as built by cargo for this test run.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stagecheck"))
}

/// The sandbox through the product's own subcommand.
pub fn sandbox_command() -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("sandbox");
    cmd
}

/// The binary with no AWS configuration from the machine it runs on (no `AWS_*`
/// or `STAGECHECK_*` variable, no config or credentials file, no instance
/// metadata): only what a test gives it.
pub fn isolated() -> Command {
    let mut cmd = stagecheck();
    for (var, _) in std::env::vars() {
        if var.starts_with("AWS_") || var.starts_with("STAGECHECK_") {
            cmd.env_remove(var);
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/stagecheck-test/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/stagecheck-test/credentials",
        );
    cmd
}

/// Runs `stagecheck run FILE -o OUT`, sends it SIGINT after `after` as Ctrl-C
/// would, and waits: what it printed, and how long it took to stop.
pub fn run_interrupted(file: &Path, out: &Path, after: Duration) -> (Output, Duration) {
    let child = stagecheck()
        .arg("run")
        .arg(file)
        .arg("-o")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start stagecheck");
    std::thread::sleep(after);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("cannot run kill");
    assert!(status.success());
    let interrupted = Instant::now();
    let output = child.wait_with_output().expect("stagecheck did not finish");
    (output, interrupted.elapsed())
}

/// The project's root folder.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn stagecheck() -> Command {
    let mut cmd = Command::new(bin());
    // A test's run must not write onto the CI job's own summary page.
    cmd.env("NO_COLOR", "1")
        .env_remove("GITHUB_STEP_SUMMARY")
        .stdin(Stdio::null());
    cmd
}

/// Runs the binary to completion with a hard time bound.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stagecheck");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.expect("wait for stagecheck"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("stagecheck did not finish within {limit:?}");
        }
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes a scenario into a temp dir and returns its path.
pub fn scenario_file(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write scenario");
    path
}

/// Runs `stagecheck run` on scenario text (written to a temporary file) with
/// `-o <summary>` and `args`, bounded by `limit`; returns the process output
/// and the summary it wrote (`Null` when it wrote none).
pub fn run_scenario(body: &str, args: &[&str], limit: Duration) -> (Output, serde_json::Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = scenario_file(dir.path(), "scenario.toml", body);
    let out = dir.path().join("summary.json");
    let output = run_bounded(
        stagecheck()
            .arg("run")
            .arg(&file)
            .arg("-o")
            .arg(&out)
            .args(args),
        limit,
    );
    let summary = if out.exists() {
        read_json(&out)
    } else {
        serde_json::Value::Null
    };
    (output, summary)
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("summary is JSON")
}

/// One request as the test server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

/// Holds every answer due inside a window once: from `after` past the first
/// request, for `hold`.
#[derive(Debug, Clone, Copy)]
pub struct Stall {
    pub after: Duration,
    pub hold: Duration,
}

#[derive(Default)]
pub struct ServerState {
    pub seen: Mutex<Vec<Seen>>,
    pub users: Mutex<HashMap<String, serde_json::Value>>,
    pub first: Mutex<Option<Instant>>,
    pub stall: Mutex<Option<Stall>>,
    /// Every answer waits this long (a slower release of the same service).
    pub delay: Mutex<Option<Duration>>,
}

/// A user-service-like HTTP server on 127.0.0.1:0 that records every request:
/// `POST …/user` stores the JSON body (400 if it is not JSON) and answers it,
/// `GET …/user/{id}` answers the stored item or 404, anything else 200 `{}`.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<ServerState>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(None, None)
    }

    pub fn with_stall(stall: Stall) -> TestServer {
        Self::start_with(Some(stall), None)
    }

    /// Answers every request after a fixed delay.
    pub fn with_delay(delay: Duration) -> TestServer {
        let server = Self::start_with(None, None);
        *server.state.delay.lock().unwrap() = Some(delay);
        server
    }

    /// Serves HTTPS with the given certificate and key (PEM).
    pub fn https(cert_pem: &str, key_pem: &str) -> TestServer {
        Self::start_with(None, Some((cert_pem.to_string(), key_pem.to_string())))
    }

    fn start_with(stall: Option<Stall>, tls: Option<(String, String)>) -> TestServer {
        let state = Arc::new(ServerState {
            stall: Mutex::new(stall),
            ..ServerState::default()
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test server runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let app = Router::new().fallback(handle).with_state(state.clone());
        match tls {
            None => {
                runtime.spawn(async move {
                    let _ = axum::serve(listener, app).await;
                });
            }
            Some((cert, key)) => {
                runtime.spawn(serve_tls(listener, app, cert, key));
            }
        }
        TestServer {
            addr,
            state,
            runtime: Some(runtime),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn count(&self, method: &Method) -> usize {
        self.state
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == method)
            .count()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn handle(State(state): State<Arc<ServerState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let now = Instant::now();
    let first = *state.first.lock().unwrap().get_or_insert(now);
    state.seen.lock().unwrap().push(Seen {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers.clone(),
        body: body.clone(),
        at: now,
    });
    let answer = answer(&state, &parts.method, parts.uri.path(), &body);
    let stall = *state.stall.lock().unwrap();
    if let Some(stall) = stall {
        let (from, to) = (first + stall.after, first + stall.after + stall.hold);
        let ready = Instant::now();
        if ready >= from && ready < to {
            tokio::time::sleep_until(to.into()).await;
        }
    }
    let delay = *state.delay.lock().unwrap();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    answer
}

fn answer(state: &ServerState, method: &Method, path: &str, body: &[u8]) -> Response {
    let json = |status: StatusCode, value: serde_json::Value| {
        let request_id = format!("req-{}", fastrand::u64(..));
        (
            status,
            [
                ("content-type", "application/json"),
                ("x-amzn-RequestId", request_id.as_str()),
            ],
            value.to_string(),
        )
            .into_response()
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let user_at = segments.iter().position(|s| *s == "user");
    match (method, user_at) {
        (&Method::POST, Some(i)) if i + 1 == segments.len() => {
            match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(item) => {
                    let id = item
                        .get("Id")
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("gen-{}", fastrand::u64(..)));
                    let mut item = item;
                    item["Id"] = serde_json::Value::String(id.clone());
                    state.users.lock().unwrap().insert(id, item.clone());
                    json(StatusCode::CREATED, item)
                }
                Err(_) => json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"message": "malformed JSON"}),
                ),
            }
        }
        (&Method::GET, Some(i)) if i + 2 == segments.len() => {
            match state.users.lock().unwrap().get(segments[i + 1]) {
                Some(item) => json(StatusCode::OK, item.clone()),
                None => json(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"message": "User not found"}),
                ),
            }
        }
        _ => json(StatusCode::OK, serde_json::json!({})),
    }
}

async fn serve_tls(listener: tokio::net::TcpListener, app: Router, cert: String, key: String) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .expect("cert PEM");
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key PEM");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server cert");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    async move {
                        use tower_service::Service;
                        let mut app = app;
                        app.call(req.map(axum::body::Body::new)).await
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost: (cert PEM, key PEM).
pub fn self_signed() -> (String, String) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("self-signed cert");
    (cert.cert.pem(), cert.signing_key.serialize_pem())
}
