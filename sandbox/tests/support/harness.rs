//! Starting moto (from the project's .venv) and the sandbox for tests, each on
//! its own free loopback port, stopped on Drop; and SDK clients pointed at moto.
//!
//! Shared by the sandbox's tests and the product's (`tests/support` includes this
//! file): each includer says where the workspace root is (`super::root()`) and how
//! the sandbox is started (`super::sandbox_command()`: the `stagecheck-sandbox`
//! binary here, `stagecheck sandbox` in the product's tests).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;

pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY_ID: &str = "AKIDSANDBOXTEST";
pub const SECRET_ACCESS_KEY: &str = "sandbox-test-secret";

pub fn moto_server() -> PathBuf {
    let path = super::root().join(".venv/bin/moto_server");
    assert!(
        path.exists(),
        "{} is missing: run scripts/test (it creates .venv with the pinned moto)",
        path.display()
    );
    path
}

/// One moto server in its own process, wiped with the process.
pub struct Moto {
    pub endpoint: String,
    child: Child,
}

impl Moto {
    /// moto picks its own port (`-p 0`) and prints it: no race with other
    /// tests choosing the same free port.
    pub fn start() -> Moto {
        let server = moto_server();
        let mut child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start moto_server");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            // moto logs every request on stderr: keep reading so it never blocks.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Running on http://127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    if let (Some(tx), Ok(port)) = (tx.take(), port.parse::<u16>()) {
                        let _ = tx.send(port);
                    }
                }
            }
        });
        let Ok(port) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("moto did not start within 30 s");
        };
        let moto = Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers(port) {
            assert!(
                Instant::now() < deadline,
                "moto does not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// Wipes every resource (moto's own reset endpoint).
    pub fn reset(&self) {
        let port = self.endpoint.rsplit(':').next().unwrap_or_default();
        let mut s = TcpStream::connect(format!("127.0.0.1:{port}")).expect("moto is gone");
        let _ = s.write_all(
            b"POST /moto-api/reset HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    }
}

fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(
        b"GET /moto-api/data.json HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .is_err()
    {
        return false;
    }
    let mut first = [0u8; 12];
    s.read_exact(&mut first).is_ok() && first.starts_with(b"HTTP/1.")
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sandbox binary, serving on its own port.
pub struct Sandbox {
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    /// The sandbox's AWS endpoint (moto behind it, API Gateway as AWS behaves).
    pub aws_endpoint: String,
    child: Option<Child>,
    stderr: tempfile::NamedTempFile,
}

/// How to start a sandbox beyond faults: extra arguments and environment.
#[derive(Default, Clone)]
pub struct Launch<'a> {
    pub faults: &'a [&'a str],
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
}

impl Sandbox {
    pub fn start(moto: &Moto, faults: &[&str], args: &[&str]) -> Sandbox {
        Sandbox::launch(
            moto,
            Launch {
                faults,
                args,
                env: &[],
            },
        )
    }

    pub fn launch(moto: &Moto, launch: Launch<'_>) -> Sandbox {
        match Sandbox::try_launch(moto, launch) {
            Ok(s) => s,
            Err(message) => panic!("{message}"),
        }
    }

    /// Starts the sandbox and waits for its ready line; the error carries its stderr.
    pub fn try_launch(moto: &Moto, launch: Launch<'_>) -> Result<Sandbox, String> {
        let stderr = tempfile::NamedTempFile::new().expect("temp file");
        let mut cmd = super::sandbox_command();
        cmd.args(["--aws-endpoint", &moto.endpoint, "--listen", "127.0.0.1:0"])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_PROFILE");
        for fault in launch.faults {
            cmd.args(["--fault", fault]);
        }
        cmd.args(launch.args);
        for (k, v) in launch.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("temp file"))
            .spawn()
            .expect("cannot start the stagecheck binary");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // `aws endpoint on URL`, then `sandbox listening on URL`.
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let second = lines.next().and_then(Result::ok);
            if let (Some(a), Some(b)) = (first, second) {
                let _ = tx.send((a, b));
            }
            // Keep draining so the sandbox never blocks on a full pipe.
            for _ in lines {}
        });
        let ready = rx.recv_timeout(Duration::from_secs(30));
        let mut sandbox = Sandbox {
            base_url: String::new(),
            aws_endpoint: String::new(),
            child: Some(child),
            stderr,
        };
        match ready {
            Ok((aws, listening)) => match (
                aws.strip_prefix("aws endpoint on "),
                listening.strip_prefix("sandbox listening on "),
            ) {
                (Some(aws), Some(url)) => {
                    sandbox.aws_endpoint = aws.trim().to_string();
                    sandbox.base_url = url.trim().to_string();
                    Ok(sandbox)
                }
                _ => Err(format!(
                    "unexpected first lines {aws:?}, {listening:?}; stderr:\n{}",
                    sandbox.stderr_text()
                )),
            },
            Err(_) => {
                let status = sandbox.stop();
                Err(format!(
                    "the sandbox did not get ready ({status:?}); stderr:\n{}",
                    sandbox.stderr_text()
                ))
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    /// SIGTERM, then up to 15 s for a clean exit (logs flushed), then SIGKILL.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}

/// SDK clients pointed at moto, as the verifier would build them.
pub struct Aws {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub apigateway: aws_sdk_apigateway::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub iam: aws_sdk_iam::Client,
}

impl Aws {
    /// Clients on moto itself (what the sandbox writes there).
    pub async fn new(moto: &Moto) -> Aws {
        Aws::at(&moto.endpoint).await
    }

    /// Clients on the sandbox's AWS endpoint, as a user's pipeline would be.
    pub async fn of(sandbox: &Sandbox) -> Aws {
        Aws::at(&sandbox.aws_endpoint).await
    }

    pub async fn at(endpoint: &str) -> Aws {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_credential_types::Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "tests",
            ))
            .load()
            .await;
        Aws {
            dynamodb: aws_sdk_dynamodb::Client::new(&config),
            logs: aws_sdk_cloudwatchlogs::Client::new(&config),
            apigateway: aws_sdk_apigateway::Client::new(&config),
            lambda: aws_sdk_lambda::Client::new(&config),
            iam: aws_sdk_iam::Client::new(&config),
        }
    }

    /// Whether `table` holds an item with this Id (consistent read).
    pub async fn has_item(&self, table: &str, id: &str) -> bool {
        self.dynamodb
            .get_item()
            .table_name(table)
            .key(
                "Id",
                aws_sdk_dynamodb::types::AttributeValue::S(id.to_string()),
            )
            .consistent_read(true)
            .send()
            .await
            .expect("GetItem")
            .item()
            .is_some()
    }

    /// Every message in a log group (paginated; an empty page with a token is
    /// not the end). Matching is left to the caller: moto's filter patterns
    /// cannot be trusted.
    pub async fn log_messages(&self, group: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = match self
                .logs
                .filter_log_events()
                .log_group_name(group)
                .set_next_token(token.clone())
                .send()
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    if e.as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception())
                    {
                        return out;
                    }
                    panic!("FilterLogEvents {group}: {e:?}");
                }
            };
            out.extend(
                page.events()
                    .iter()
                    .filter_map(|e| e.message().map(str::to_string)),
            );
            match page.next_token() {
                Some(t) if Some(t) != token.as_deref() => token = Some(t.to_string()),
                _ => return out,
            }
        }
    }

    /// Polls a log group until some message contains `needle`, up to `timeout`.
    pub async fn wait_for_log(&self, group: &str, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .log_messages(group)
                .await
                .iter()
                .any(|m| m.contains(needle))
            {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Polls `probe` until it gives a value, up to `timeout` (log ingestion,
/// configuration refreshes).
pub async fn eventually<T>(timeout: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// A plain HTTP client for the sandbox (no proxy, loopback only).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}

/// One answer from the sandbox, read whole.
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
    pub elapsed: Duration,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }
}

/// Sends a request, with optional JSON text and headers, and reads the answer.
pub async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let started = Instant::now();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await.expect("the sandbox answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
    };
    Answer {
        status,
        headers,
        body,
        elapsed: started.elapsed(),
    }
}

/// A unique marker for correlation ids and item ids.
pub fn marker(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
