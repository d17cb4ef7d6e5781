//! One keep-alive HTTP/1.1 connection per VU, driven by the VU's own task
//! through `http1` (no pool, no connection task, no body channel). Plain TCP
//! or TLS, resolved and configured once per run.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::http1::{self, Buffers};
use crate::metrics::TransportError;
use crate::scenario::{Scheme, Target, TlsOptions};

pub use super::http1::{Answer, Encoded};

pub type Body = Full<Bytes>;

/// What a VU sends: a request built for this iteration, or a fixed step's
/// bytes encoded before the run with this request's correlation id.
#[derive(Clone, Copy)]
pub enum Outgoing<'a> {
    Built(&'a Request<Body>),
    Encoded(&'a Encoded, &'a [u8]),
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        host: String,
        source: std::io::Error,
    },
    #[error("{host} resolved to no address")]
    NoAddress { host: String },
    #[error("cannot read CA certificate {path}: {message}")]
    CaCert { path: String, message: String },
    #[error("TLS setup: {0}")]
    TlsConfig(String),
    #[error("cannot connect to {addr}: {message}")]
    Tcp { addr: SocketAddr, message: String },
    #[error("TLS handshake with {addr} failed: {message}")]
    Tls { addr: SocketAddr, message: String },
    #[error("connecting to {addr} timed out after {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
}

/// How to reach the target: its addresses and, for HTTPS, the TLS setup.
pub struct Connector {
    addrs: Vec<SocketAddr>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
}

impl Connector {
    pub async fn new(
        target: &Target,
        tls: &TlsOptions,
        connect_timeout: Duration,
    ) -> Result<Connector, ConnectError> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|source| ConnectError::Resolve {
                host: target.host.clone(),
                source,
            })?
            .collect();
        if addrs.is_empty() {
            return Err(ConnectError::NoAddress {
                host: target.host.clone(),
            });
        }
        let tls = match target.scheme {
            Scheme::Http => None,
            Scheme::Https => {
                let name = ServerName::try_from(target.host.clone())
                    .map_err(|e| ConnectError::TlsConfig(format!("{}: {e}", target.host)))?;
                Some((TlsConnector::from(Arc::new(tls_config(tls)?)), name))
            }
        };
        Ok(Connector {
            addrs,
            tls,
            connect_timeout,
        })
    }

    /// Opens a connection; VUs spread over the target's addresses.
    pub async fn connect(&self, vu: u64) -> Result<Stream, ConnectError> {
        let addr = self.addrs[(vu as usize) % self.addrs.len()];
        let timeout = self.connect_timeout;
        tokio::time::timeout(timeout, self.connect_to(addr))
            .await
            .map_err(|_| ConnectError::Timeout { addr, timeout })?
    }

    async fn connect_to(&self, addr: SocketAddr) -> Result<Stream, ConnectError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| ConnectError::Tcp {
                addr,
                message: e.to_string(),
            })?;
        // Requests are small and latency is the product: never wait for Nagle.
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some((connector, name)) => {
                let stream =
                    connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|e| ConnectError::Tls {
                            addr,
                            message: e.to_string(),
                        })?;
                Ok(Stream::Tls(Box::new(stream)))
            }
        }
    }
}

/// A connection to the target, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

fn tls_config(options: &TlsOptions) -> Result<rustls::ClientConfig, ConnectError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::TlsConfig(e.to_string()))?;
    let mut config = if options.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let given = match &options.ca_cert {
            Some(path) => add_pem_certificates(&mut roots, path)?,
            None => Vec::new(),
        };
        if given.is_empty() {
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| ConnectError::TlsConfig(e.to_string()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(GivenOrWebPki {
                    webpki,
                    given,
                    provider,
                }))
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Adds the file's certificates to `roots`; returns them.
fn add_pem_certificates(
    roots: &mut rustls::RootCertStore,
    path: &std::path::Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, ConnectError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let err = |message: String| ConnectError::CaCert {
        path: path.display().to_string(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut added = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots.add(cert.clone()).map_err(|e| err(e.to_string()))?;
        added.push(cert);
    }
    if added.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(added)
}

/// `--ca-cert`: certificates the user gave are trusted as roots, and also as
/// the server's own certificate byte for byte. A self-signed certificate made
/// with `openssl req -x509` is marked as a CA, which webpki refuses as a
/// server's (`CaUsedAsEndEntity`); when it is exactly the one the user gave,
/// it is the one they mean to trust. The handshake's signatures are still
/// checked against it, so only its key's holder passes.
#[derive(Debug)]
struct GivenOrWebPki {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    given: Vec<rustls::pki_types::CertificateDer<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for GivenOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(verified) => Ok(verified),
            Err(_) if self.given.iter().any(|c| c.as_ref() == end_entity.as_ref()) => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `--insecure`: the user asked to skip verification (self-signed test stages).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A VU's connection, opened on first use and reopened after the server
/// closes it or a request fails. The buffers outlive the connections.
pub struct Connection {
    open: Option<Stream>,
    buffers: Buffers,
    vu: u64,
    /// One timer per VU, moved only when it fires (about once per timeout):
    /// a fresh timer per request is a lock and two timer-wheel updates every
    /// time, measurable on a fast target.
    watchdog: Pin<Box<Sleep>>,
}

impl Connection {
    pub fn new(vu: u64) -> Connection {
        Connection {
            open: None,
            buffers: Buffers::new(),
            vu,
            watchdog: Box::pin(tokio::time::sleep_until(tokio::time::Instant::from_std(
                far_future(),
            ))),
        }
    }

    /// Sends and reads the whole answer by `deadline`, connecting first when
    /// needed. The answer borrows the connection's buffer until the next request.
    pub async fn send(
        &mut self,
        connector: &Connector,
        request: Outgoing<'_>,
        deadline: Instant,
    ) -> Result<Answer<'_>, TransportError> {
        let deadline = tokio::time::Instant::from_std(deadline);
        // The watchdog may be set for an earlier request's deadline; when it
        // fires early it is moved to this one. Only a later one must be moved now.
        if self.watchdog.deadline() > deadline {
            self.watchdog.as_mut().reset(deadline);
        }
        let outcome = {
            let mut watchdog = self.watchdog.as_mut();
            let exchange = exchange(
                &mut self.open,
                &mut self.buffers,
                self.vu,
                connector,
                request,
            );
            tokio::pin!(exchange);
            loop {
                tokio::select! {
                    biased;
                    outcome = &mut exchange => break Some(outcome),
                    () = &mut watchdog => {
                        if tokio::time::Instant::now() >= deadline {
                            break None;
                        }
                        watchdog.as_mut().reset(deadline);
                    }
                }
            }
        };
        match outcome {
            Some(Ok(())) => Ok(self.buffers.answer()),
            Some(Err(e)) => {
                self.open = None;
                Err(e)
            }
            None => {
                // The connection is mid-exchange; it cannot be reused.
                self.open = None;
                Err(TransportError::Timeout)
            }
        }
    }
}

fn far_future() -> Instant {
    // About 30 years, as tokio's own "never"; `checked_add` keeps it total.
    let now = Instant::now();
    now.checked_add(Duration::from_secs(86_400 * 365 * 30))
        .unwrap_or(now)
}

async fn exchange(
    open: &mut Option<Stream>,
    buffers: &mut Buffers,
    vu: u64,
    connector: &Connector,
    request: Outgoing<'_>,
) -> Result<(), TransportError> {
    // A request only goes out on a connection still open: one the server
    // closed while idle is replaced before anything is sent, as hyper retried
    // a request that provably never left.
    if let Some(stream) = open.as_mut()
        && http1::closed_while_idle(stream)
    {
        *open = None;
    }
    if open.is_none() {
        *open = Some(
            connector
                .connect(vu)
                .await
                .map_err(|_| TransportError::Connect)?,
        );
    }
    let stream = open.as_mut().ok_or(TransportError::Connect)?;
    let exchanged = match request {
        Outgoing::Built(request) => http1::exchange(stream, buffers, request).await,
        Outgoing::Encoded(request, id) => {
            http1::exchange_encoded(stream, buffers, request, id).await
        }
    };
    match exchanged {
        Ok(true) => Ok(()),
        Ok(false) => {
            *open = None;
            Ok(())
        }
        Err(_) => {
            *open = None;
            Err(TransportError::Io)
        }
    }
}
