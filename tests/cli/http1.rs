//! The engine's own HTTP/1.1 client (`engine::http1`) against real local
//! servers: a raw TCP server whose bytes the test controls, and a hyper
//! server. For every answer both hyper's client and ours read, they must see
//! the same status, headers and body.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Frame;
use stagecheck::engine::client::{Connection, Connector, Outgoing};
use stagecheck::engine::http1::{self, Buffers, Encoded};
use stagecheck::metrics::TransportError;
use stagecheck::scenario::{Scheme, Target, TlsOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every test's bound: a hang is a failure, not a stuck run.
const LIMIT: Duration = Duration::from_secs(20);

/// What the raw server writes for one request: the pieces are written one by
/// one (with `gap` between them), then the connection is closed if asked.
#[derive(Clone)]
struct Reply {
    pieces: Vec<Vec<u8>>,
    gap: Duration,
    close: bool,
    /// Close without a TLS close_notify, as a crashed server would.
    abrupt: bool,
}

impl Reply {
    fn bytes(text: &[u8]) -> Reply {
        Reply {
            pieces: vec![text.to_vec()],
            gap: Duration::ZERO,
            close: false,
            abrupt: false,
        }
    }

    fn closing(mut self) -> Reply {
        self.close = true;
        self
    }

    fn cut_off(mut self) -> Reply {
        self.close = true;
        self.abrupt = true;
        self
    }
}

/// A TCP server on 127.0.0.1:0 that reads requests (head and Content-Length
/// body) and answers each with what `script(request number on the
/// connection, request bytes)` returns; it counts connections and requests.
struct RawServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
}

type Script = Arc<dyn Fn(usize, &[u8]) -> Reply + Send + Sync>;

impl RawServer {
    async fn start(script: impl Fn(usize, &[u8]) -> Reply + Send + Sync + 'static) -> RawServer {
        RawServer::start_with(None, script).await
    }

    /// The same server behind TLS with this certificate and key (PEM).
    async fn tls(
        cert: &str,
        key: &str,
        script: impl Fn(usize, &[u8]) -> Reply + Send + Sync + 'static,
    ) -> RawServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        RawServer::start_with(Some(acceptor), script).await
    }

    async fn start_with(
        acceptor: Option<tokio_rustls::TlsAcceptor>,
        script: impl Fn(usize, &[u8]) -> Reply + Send + Sync + 'static,
    ) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = RawServer {
            addr,
            connections: Arc::default(),
            requests: Arc::default(),
            closed: Arc::default(),
            received: Arc::default(),
        };
        let script: Script = Arc::new(script);
        let (connections, requests, closed, received) = (
            server.connections.clone(),
            server.requests.clone(),
            server.closed.clone(),
            server.received.clone(),
        );
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                connections.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                let (script, requests, closed, received) = (
                    script.clone(),
                    requests.clone(),
                    closed.clone(),
                    received.clone(),
                );
                tokio::spawn(async move {
                    match acceptor {
                        None => serve_raw(tcp, script, requests, received).await,
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                serve_raw(tls, script, requests, received).await;
                            }
                        }
                    }
                    closed.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        server
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn serve_raw<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut tcp: S,
    script: Script,
    requests: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
) {
    let mut buf = Vec::new();
    // Bounded: no test sends more than a few thousand requests on one connection.
    for n in 0..100_000 {
        let Some(request) = read_request(&mut tcp, &mut buf).await else {
            return;
        };
        requests.fetch_add(1, Ordering::SeqCst);
        received.lock().unwrap().push(request.clone());
        let reply = script(n, &request);
        for (i, piece) in reply.pieces.iter().enumerate() {
            if i > 0 && !reply.gap.is_zero() {
                tokio::time::sleep(reply.gap).await;
            }
            if tcp.write_all(piece).await.is_err() {
                return;
            }
        }
        if reply.close {
            // A TLS close_notify (a FIN for TCP): a close-delimited body over
            // TLS ends only with one.
            if !reply.abrupt {
                let _ = tcp.shutdown().await;
            }
            return;
        }
    }
}

/// One request off the connection: its head and Content-Length body.
async fn read_request<S: tokio::io::AsyncRead + Unpin>(
    tcp: &mut S,
    buf: &mut Vec<u8>,
) -> Option<Vec<u8>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let total = end + 4 + length;
            if buf.len() >= total {
                let request = buf[..total].to_vec();
                buf.drain(..total);
                return Some(request);
            }
        }
        let mut chunk = [0u8; 8192];
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn get(path: &str) -> Request<Full<Bytes>> {
    request("GET", path, &[], Bytes::new())
}

fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body)).unwrap()
}

/// An answer as either client saw it; headers as (lower-case name, value)
/// sorted, since hyper's map groups values by name.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn seen_ours(buffers: &Buffers) -> Seen {
    let answer = buffers.answer();
    let mut headers: Vec<(String, Vec<u8>)> = answer
        .headers
        .iter()
        .map(|(n, v)| (String::from_utf8_lossy(n).to_ascii_lowercase(), v.to_vec()))
        .collect();
    headers.sort();
    Seen {
        status: answer.status.as_u16(),
        headers,
        body: answer.body.to_vec(),
    }
}

/// One request through our client on a fresh connection.
async fn ours(addr: SocketAddr, request: &Request<Full<Bytes>>) -> Result<Seen, http1::Http1Error> {
    let mut tcp = TcpStream::connect(addr).await?;
    let mut buffers = Buffers::new();
    http1::exchange(&mut tcp, &mut buffers, request).await?;
    Ok(seen_ours(&buffers))
}

/// The same request through hyper's client connection.
async fn hypers(addr: SocketAddr, request: &Request<Full<Bytes>>) -> Result<Seen, hyper::Error> {
    hypers_on(TcpStream::connect(addr).await.unwrap(), request).await
}

async fn hypers_on<S>(stream: S, request: &Request<Full<Bytes>>) -> Result<Seen, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let response = sender.send_request(request.clone()).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    headers.sort();
    Ok(Seen {
        status: parts.status.as_u16(),
        headers,
        body: body.to_vec(),
    })
}

/// Both clients against `addr`: they must agree; returns what they saw.
async fn both(addr: SocketAddr, request: Request<Full<Bytes>>) -> Seen {
    let mine = ours(addr, &request).await.expect("our client reads it");
    let theirs = hypers(addr, &request).await.expect("hyper reads it");
    assert_eq!(mine, theirs, "our client and hyper's disagree");
    mine
}

fn bounded<F: std::future::Future>(f: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        tokio::time::timeout(LIMIT, f)
            .await
            .expect("bounded: the test took too long")
    })
}

fn header<'a>(seen: &'a Seen, name: &str) -> Option<&'a [u8]> {
    seen.headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

#[test]
fn raw_framings_read_as_hyper_reads_them() {
    bounded(async {
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let big_chunked = {
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for part in big.chunks(65_536) {
                out.extend_from_slice(format!("{:x};i=1\r\n", part.len()).as_bytes());
                out.extend_from_slice(part);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\nX-Sum: 1\r\n\r\n");
            out
        };
        let big_length = {
            let mut out =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", big.len()).into_bytes();
            out.extend_from_slice(&big);
            out
        };
        let server = RawServer::start(move |_, request| {
            let line = String::from_utf8_lossy(request);
            let path = line.split(' ').nth(1).unwrap_or("/").to_string();
            match path.as_str() {
                "/length" => Reply::bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-Amzn-RequestId: abc\r\n\r\nhello world"),
                "/chunked" => Reply::bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5;name=value;other\r\nhello\r\n6;x=\"q\"\r\n world\r\n0;end\r\nX-Trailer: one\r\nX-More: two\r\n\r\n"),
                "/close" => Reply::bytes(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the server closes").closing(),
                "/204" => Reply::bytes(b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n"),
                "/304" => Reply::bytes(b"HTTP/1.1 304 Not Modified\r\nETag: \"e\"\r\nContent-Length: 42\r\n\r\n"),
                "/head" => Reply::bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n"),
                "/continue" => Reply::bytes(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
                "/big-length" => Reply { pieces: big_length.chunks(10_000).map(<[u8]>::to_vec).collect(), gap: Duration::ZERO, close: false, abrupt: false },
                "/big-chunked" => Reply { pieces: big_chunked.chunks(7_777).map(<[u8]>::to_vec).collect(), gap: Duration::ZERO, close: false, abrupt: false },
                _ => Reply::bytes(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            }
        })
        .await;
        let addr = server.addr;

        let seen = both(addr, get("/length")).await;
        assert_eq!(
            (seen.status, seen.body.as_slice()),
            (200, &b"hello world"[..])
        );
        assert_eq!(header(&seen, "x-amzn-requestid"), Some(&b"abc"[..]));

        let seen = both(addr, get("/chunked")).await;
        assert_eq!(seen.body, b"hello world");
        assert_eq!(header(&seen, "x-trailer"), None, "trailers are not headers");

        let seen = both(addr, get("/close")).await;
        assert_eq!(seen.body, b"until the server closes");

        for (path, status) in [("/204", 204), ("/304", 304)] {
            let seen = both(addr, get(path)).await;
            assert_eq!((seen.status, seen.body.len()), (status, 0));
        }
        let seen = both(addr, request("HEAD", "/head", &[], Bytes::new())).await;
        assert_eq!((seen.status, seen.body.len()), (200, 0));
        assert_eq!(header(&seen, "content-length"), Some(&b"42"[..]));

        let seen = both(
            addr,
            request(
                "POST",
                "/continue",
                &[("expect", "100-continue")],
                Bytes::from_static(b"{}"),
            ),
        )
        .await;
        assert_eq!((seen.status, seen.body.as_slice()), (201, &b"ok"[..]));

        for path in ["/big-length", "/big-chunked"] {
            let seen = both(addr, get(path)).await;
            assert_eq!(seen.body, big, "{path}");
        }
    });
}

#[test]
fn an_answer_in_one_byte_writes_reads_whole() {
    bounded(async {
        let answers: [&'static [u8]; 2] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Id: 7\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\n",
        ];
        for text in answers {
            let server = RawServer::start(move |_, _| Reply {
                pieces: text.iter().map(|b| vec![*b]).collect(),
                // A pause per byte, so each arrives in its own read.
                gap: Duration::from_millis(1),
                close: false,
                abrupt: false,
            })
            .await;
            let whole = RawServer::start(move |_, _| Reply::bytes(text)).await;
            let split = both(server.addr, get("/")).await;
            let at_once = both(whole.addr, get("/")).await;
            assert_eq!(split, at_once);
            assert_eq!(split.status, 200);
        }
    });
}

#[test]
fn a_thousand_requests_on_one_keep_alive_connection() {
    bounded(async {
        let server = RawServer::start(|n, _| {
            let body = format!("{{\"n\":{n}}}");
            let text = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            Reply::bytes(text.as_bytes())
        })
        .await;
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        let mut buffers = Buffers::new();
        for n in 0..1000 {
            let reusable = http1::exchange(&mut tcp, &mut buffers, &get("/"))
                .await
                .unwrap();
            assert!(reusable);
            assert_eq!(buffers.answer().body, format!("{{\"n\":{n}}}").as_bytes());
        }
        assert_eq!(server.connections.load(Ordering::SeqCst), 1);
        assert_eq!(server.requests.load(Ordering::SeqCst), 1000);
    });
}

fn target(addr: SocketAddr) -> Target {
    Target {
        base_url: format!("http://{addr}"),
        scheme: Scheme::Http,
        host: addr.ip().to_string(),
        port: addr.port(),
        authority: addr.to_string(),
        host_header: http::HeaderValue::from_str(&addr.to_string()).unwrap(),
        base_path: String::new(),
    }
}

async fn connector(addr: SocketAddr) -> Connector {
    Connector::new(
        &target(addr),
        &TlsOptions::default(),
        Duration::from_secs(5),
    )
    .await
    .unwrap()
}

fn soon(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms)
}

#[test]
fn the_engine_connection_reconnects_when_the_server_closes() {
    bounded(async {
        // Every fifth answer says `Connection: close` and the server closes.
        let server = RawServer::start(|n, _| {
            if n == 4 {
                Reply::bytes(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
                    .closing()
            } else {
                Reply::bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            }
        })
        .await;
        let connector = connector(server.addr).await;
        let mut connection = Connection::new(1);
        // Requests encoded before the run and built ones take turns.
        let encoded = Encoded::new(&get("/"), None).unwrap();
        for i in 0..50 {
            let built = get("/");
            let outgoing = if i % 2 == 0 {
                Outgoing::Encoded(&encoded, b"")
            } else {
                Outgoing::Built(&built)
            };
            let answer = connection
                .send(&connector, outgoing, soon(5000))
                .await
                .unwrap();
            assert_eq!((answer.status, answer.body), (StatusCode::OK, &b"ok"[..]));
        }
        assert_eq!(server.requests.load(Ordering::SeqCst), 50);
        assert_eq!(server.connections.load(Ordering::SeqCst), 10);

        // The server closes after every third answer without saying so: once
        // it has closed, the next request goes out on a new connection.
        let server = RawServer::start(|n, _| {
            let reply = Reply::bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            if n == 2 { reply.closing() } else { reply }
        })
        .await;
        let connector = self::connector(server.addr).await;
        let mut connection = Connection::new(1);
        for i in 1..=30 {
            let answer = connection
                .send(&connector, Outgoing::Built(&get("/")), soon(5000))
                .await
                .unwrap();
            assert_eq!(answer.status, StatusCode::OK);
            if i % 3 == 0 {
                while server.closed.load(Ordering::SeqCst) < i / 3 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                // Lets the runtime's reactor see the close.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert_eq!(server.requests.load(Ordering::SeqCst), 30);
        assert_eq!(server.connections.load(Ordering::SeqCst), 10);
    });
}

#[test]
fn malformed_answers_are_io_errors_and_the_vu_goes_on() {
    bounded(async {
        let broken: [&'static [u8]; 6] = [
            b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n",
            b"SMTP ready\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nNo Colon Here\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: twelve\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nnot-hex\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        ];
        let queue = Arc::new(Mutex::new(VecDeque::from(broken.to_vec())));
        let script_queue = queue.clone();
        let server = RawServer::start(move |_, _| match script_queue.lock().unwrap().pop_front() {
            // Each broken answer ends its connection, as a confused server would.
            Some(text) => Reply::bytes(text).closing(),
            None => Reply::bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        })
        .await;
        let connector = connector(server.addr).await;
        let mut connection = Connection::new(1);
        for text in broken {
            let outcome = connection
                .send(&connector, Outgoing::Built(&get("/")), soon(5000))
                .await;
            assert!(
                matches!(outcome, Err(TransportError::Io)),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
        let answer = connection
            .send(&connector, Outgoing::Built(&get("/")), soon(5000))
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        // hyper's client refuses the same answers.
        for text in broken {
            let server = RawServer::start(move |_, _| Reply::bytes(text).closing()).await;
            assert!(
                hypers(server.addr, &get("/")).await.is_err(),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    });
}

#[test]
fn a_silent_or_half_answer_is_a_timeout_at_the_deadline() {
    bounded(async {
        // Counted over the server's life: the second connection's first
        // request is answered properly.
        let count = AtomicUsize::new(0);
        let server = RawServer::start(move |_, _| match count.fetch_add(1, Ordering::SeqCst) {
            0 => Reply {
                pieces: vec![b"HTTP/1.1 200 OK\r\nContent-Le".to_vec(), Vec::new()],
                gap: Duration::from_secs(30),
                close: false,
                abrupt: false,
            },
            _ => Reply::bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        })
        .await;
        let connector = connector(server.addr).await;
        let mut connection = Connection::new(1);
        let started = Instant::now();
        let outcome = connection
            .send(&connector, Outgoing::Built(&get("/")), soon(300))
            .await;
        assert!(matches!(outcome, Err(TransportError::Timeout)));
        let took = started.elapsed();
        assert!(
            (Duration::from_millis(290)..Duration::from_secs(2)).contains(&took),
            "{took:?}"
        );
        // The half-read connection is dropped; the next request uses a new one.
        let answer = connection
            .send(&connector, Outgoing::Built(&get("/")), soon(5000))
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(server.connections.load(Ordering::SeqCst), 2);
    });
}

/// A hyper server with the ordinary framings: what it writes, our client
/// must read as hyper's client does.
async fn hyper_server() -> SocketAddr {
    use hyper::service::service_fn;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|request: Request<hyper::body::Incoming>| async move {
                    let path = request.uri().path().to_string();
                    let (parts, body) = request.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let frames: VecDeque<Frame<Bytes>> = match path.as_str() {
                        "/chunked" => {
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("x-trailer", http::HeaderValue::from_static("t"));
                            VecDeque::from([
                                Frame::data(Bytes::from_static(b"hello")),
                                Frame::data(Bytes::from_static(b" ")),
                                Frame::data(Bytes::from_static(b"world")),
                                Frame::trailers(trailers),
                            ])
                        }
                        "/big" => (0..64)
                            .map(|i| Frame::data(Bytes::from(vec![i as u8; 16_384])))
                            .collect(),
                        _ => VecDeque::new(),
                    };
                    let builder = http::Response::builder().header("x-path", path.as_str());
                    let response = match path.as_str() {
                        "/chunked" | "/big" => builder
                            .header("trailer", "x-trailer")
                            .body(Frames(frames).boxed()),
                        "/204" => builder.status(204).body(Full::new(Bytes::new()).boxed()),
                        "/304" => builder.status(304).body(Full::new(Bytes::new()).boxed()),
                        "/echo" => builder
                            .header("x-method", parts.method.as_str())
                            .body(Full::new(body).boxed()),
                        _ => builder.body(Full::new(Bytes::from_static(b"{\"ok\":true}")).boxed()),
                    };
                    Ok::<_, Infallible>(response.unwrap())
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// A body of frames known in advance, of unknown length to hyper, so it
/// is sent chunked (with trailers when the last frame has them).
struct Frames(VecDeque<Frame<Bytes>>);

impl hyper::body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
}

#[test]
fn a_hyper_server_reads_the_same_through_both_clients() {
    bounded(async {
        let addr = hyper_server().await;
        let seen = both(addr, get("/plain")).await;
        assert_eq!(seen.body, b"{\"ok\":true}");
        let seen = both(addr, get("/chunked")).await;
        assert_eq!(seen.body, b"hello world");
        let seen = both(addr, get("/big")).await;
        assert_eq!(seen.body.len(), 64 * 16_384);
        for (path, status) in [("/204", 204), ("/304", 304)] {
            assert_eq!(both(addr, get(path)).await.status, status);
        }
        let seen = both(addr, request("HEAD", "/plain", &[], Bytes::new())).await;
        assert!(seen.body.is_empty());
        assert_eq!(header(&seen, "content-length"), Some(&b"11"[..]));
        // hyper's server answers 100 Continue before the service reads the body.
        let seen = both(
            addr,
            request(
                "POST",
                "/echo",
                &[("expect", "100-continue")],
                Bytes::from_static(b"{\"a\":1}"),
            ),
        )
        .await;
        assert_eq!(
            (seen.status, seen.body.as_slice()),
            (200, &b"{\"a\":1}"[..])
        );
        let seen = both(
            addr,
            request("PUT", "/echo", &[], Bytes::from(vec![b'x'; 100_000])),
        )
        .await;
        assert_eq!(seen.body.len(), 100_000);
        assert_eq!(header(&seen, "x-method"), Some(&b"PUT"[..]));
    });
}

#[test]
fn requests_are_written_byte_for_byte_as_hyper_writes_them() {
    bounded(async {
        let server =
            RawServer::start(|_, _| Reply::bytes(b"HTTP/1.1 204 No Content\r\n\r\n")).await;
        let requests = [
            get("/a/b?c=d&e"),
            request(
                "POST",
                "/user",
                &[("content-type", "application/json"), ("x-a", "1")],
                Bytes::from_static(b"{\"Id\":\"x\"}"),
            ),
            request("PUT", "/big", &[], Bytes::from(vec![b'y'; 50_000])),
            request(
                "DELETE",
                "/user/1",
                &[("x-b", "2"), ("x-b", "3")],
                Bytes::new(),
            ),
        ];
        for request in requests {
            let before = server.received.lock().unwrap().len();
            ours(server.addr, &request).await.unwrap();
            hypers(server.addr, &request).await.unwrap();
            let received = server.received.lock().unwrap();
            assert_eq!(received.len(), before + 2);
            assert_eq!(
                String::from_utf8_lossy(&received[before]),
                String::from_utf8_lossy(&received[before + 1])
            );
        }
    });
}

#[test]
fn a_malformed_answer_is_a_counted_io_error_in_the_summary() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(RawServer::start(|_, _| {
        Reply::bytes(b"HTTP/1.1 200 OK\r\nBroken\r\n\r\n").closing()
    }));
    let body = format!(
        "[target]\nbase_url = \"{}\"\nstage = \"t\"\n[load]\nvus = 2\niterations = 20\n[[steps]]\nname = \"get\"\nmethod = \"GET\"\npath = \"/\"\n",
        server.url()
    );
    let (output, summary) = crate::support::run_scenario(&body, &["-q"], LIMIT);
    let stderr = crate::support::text(&output.stderr);
    assert!(matches!(output.status.code(), Some(0 | 1)), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let step = &summary["steps"][0];
    assert_eq!(step["requests"], 20);
    assert_eq!(step["errors"]["io"], 20);
    assert_eq!(server.requests.load(Ordering::SeqCst), 20);
}

#[test]
fn the_engine_counts_equal_the_server_across_reconnects() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // Every seventh answer on a connection closes it, with chunked answers
    // in between; those two kinds lack the header a check looks for.
    let without_header = Arc::new(AtomicUsize::new(0));
    let counted = without_header.clone();
    let server = runtime.block_on(RawServer::start(move |n, _| match n % 7 {
        6 => {
            counted.fetch_add(1, Ordering::SeqCst);
            Reply::bytes(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
                .closing()
        }
        3 => {
            counted.fetch_add(1, Ordering::SeqCst);
            Reply::bytes(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x\r\nok\r\n0\r\n\r\n",
            )
        }
        _ => Reply::bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Amzn-RequestId: r\r\n\r\nok"),
    }));
    let body = format!(
        "[target]\nbase_url = \"{}\"\nstage = \"t\"\n[load]\nvus = 4\niterations = 400\n[[steps]]\nname = \"get\"\nmethod = \"GET\"\npath = \"/\"\nchecks = [{{ status = [200] }}, {{ body_contains = \"ok\" }}, {{ header = \"x-amzn-requestid\", exists = true }}]\n",
        server.url()
    );
    let (output, summary) = crate::support::run_scenario(&body, &["-q"], LIMIT);
    let step = &summary["steps"][0];
    assert_eq!(
        step["requests"],
        400,
        "{}",
        crate::support::text(&output.stderr)
    );
    assert_eq!(step["status"]["200"], 400);
    assert_eq!(server.requests.load(Ordering::SeqCst), 400);
    let without = without_header.load(Ordering::SeqCst) as u64;
    assert!(without > 0);
    assert_eq!(summary["checks"]["failed"].as_u64(), Some(without));
    assert_eq!(
        summary["checks"]["passed"].as_u64(),
        Some(3 * 400 - without)
    );
}

#[test]
fn over_tls_one_connection_carries_many_requests() {
    let (cert, key) = crate::support::self_signed();
    let server = crate::support::TestServer::https(&cert, &key);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    bounded(async {
        let mut target = target(server.addr);
        target.scheme = Scheme::Https;
        let tls = TlsOptions {
            ca_cert: Some(ca),
            insecure: false,
        };
        let connector = Connector::new(&target, &tls, Duration::from_secs(5))
            .await
            .unwrap();
        let mut connection = Connection::new(1);
        let created = request(
            "POST",
            "/t/user",
            &[("content-type", "application/json")],
            Bytes::from_static(b"{\"Id\":\"a1\",\"Name\":\"n\"}"),
        );
        let answer = connection
            .send(&connector, Outgoing::Built(&created), soon(5000))
            .await
            .unwrap();
        let stored: serde_json::Value = serde_json::from_slice(answer.body).unwrap();
        assert_eq!(stored["Id"], "a1");
        for _ in 0..200 {
            let answer = connection
                .send(&connector, Outgoing::Built(&get("/t/user/a1")), soon(5000))
                .await
                .unwrap();
            assert_eq!(answer.status, StatusCode::OK);
            let read: serde_json::Value = serde_json::from_slice(answer.body).unwrap();
            assert_eq!(read, stored);
        }
    });
    assert_eq!(server.seen().len(), 201);
}

#[test]
fn over_tls_the_framings_and_reconnects_hold() {
    let (cert, key) = crate::support::self_signed();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    bounded(async {
        // Per connection: a chunked answer, a close-delimited one every tenth.
        let server = RawServer::tls(&cert, &key, |n, _| match n {
            9 => Reply::bytes(b"HTTP/1.1 200 OK\r\n\r\nclosed").closing(),
            n if n % 2 == 0 => Reply::bytes(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;e\r\ntext\r\n0\r\nT: 1\r\n\r\n",
            ),
            _ => Reply::bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ntext"),
        })
        .await;
        let mut target = target(server.addr);
        target.scheme = Scheme::Https;
        let tls = TlsOptions {
            ca_cert: Some(ca),
            insecure: false,
        };
        let connector = Connector::new(&target, &tls, Duration::from_secs(5))
            .await
            .unwrap();
        let mut connection = Connection::new(1);
        for i in 1..=100 {
            let answer = connection
                .send(&connector, Outgoing::Built(&get("/")), soon(5000))
                .await
                .unwrap();
            let expected: &[u8] = if i % 10 == 0 { b"closed" } else { b"text" };
            assert_eq!(answer.body, expected, "request {i}");
        }
        assert_eq!(server.requests.load(Ordering::SeqCst), 100);
        // Kept alive between the closes: TLS session tickets and the like
        // are not mistaken for the server closing.
        assert_eq!(server.connections.load(Ordering::SeqCst), 10);
    });
}

#[test]
fn over_tls_both_clients_agree_on_answers_and_on_a_cut_off_one() {
    let (cert, key) = crate::support::self_signed();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    bounded(async {
        let server = RawServer::tls(&cert, &key, |_, request| {
            let line = String::from_utf8_lossy(request);
            match line.split(' ').nth(1).unwrap_or("/") {
                "/chunked" => Reply::bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\n"),
                "/close" => Reply::bytes(b"HTTP/1.1 200 OK\r\n\r\nto the close_notify").closing(),
                "/cut" => Reply::bytes(b"HTTP/1.1 200 OK\r\n\r\ncut off").cut_off(),
                _ => Reply::bytes(b"HTTP/1.1 204 No Content\r\n\r\n"),
            }
        })
        .await;
        let mut target = target(server.addr);
        target.scheme = Scheme::Https;
        let tls = TlsOptions {
            ca_cert: Some(ca),
            insecure: false,
        };
        let connector = Connector::new(&target, &tls, Duration::from_secs(5))
            .await
            .unwrap();
        for path in ["/chunked", "/close", "/cut", "/"] {
            let request = get(path);
            let mut stream = connector.connect(1).await.unwrap();
            let mut buffers = Buffers::new();
            let mine = http1::exchange(&mut stream, &mut buffers, &request)
                .await
                .map(|_| seen_ours(&buffers));
            let theirs = hypers_on(connector.connect(1).await.unwrap(), &request).await;
            match (mine, theirs) {
                (Ok(mine), Ok(theirs)) => assert_eq!(mine, theirs, "{path}"),
                // Without close_notify a close-delimited body may be truncated:
                // both refuse it.
                (Err(_), Err(_)) => assert_eq!(path, "/cut"),
                (mine, theirs) => panic!(
                    "{path}: ours {:?}, hyper's {:?}",
                    mine.map(|s| s.status),
                    theirs.map(|s| s.status)
                ),
            }
        }
    });
}
