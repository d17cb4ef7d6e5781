//! The request path's own HTTP/1.1 client: one request written from the
//! prepared parts, the answer read into a buffer the VU keeps across requests
//! and reconnects, its head parsed in place with `httparse` (the parser hyper
//! uses, with hyper's defaults), and its body framed by `Content-Length`,
//! chunked encoding or the connection's close.
//!
//! hyper's client connection cost a fresh read buffer per answer (its head is
//! split off and frozen into the `HeaderMap`), two task wake-ups and a body
//! channel per request; here an answer is a view into the kept buffer, valid
//! until the next request. The framing rules follow hyper 1's client so that
//! what the engine sees does not change: informational answers skipped (a 101
//! ends the connection), no body for HEAD, 204 and 304, `Transfer-Encoding`
//! over `Content-Length`, differing or invalid `Content-Length` refused.

use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// The read buffer's size to start with and to go back to: hyper's.
const INIT_BUFFER: usize = 8192;
/// A head not complete within this many bytes is refused (hyper's default).
const MAX_HEAD: usize = 8192 + 4096 * 100;
/// Headers beyond this are refused (hyper's default).
const MAX_HEADERS: usize = 100;
/// A chunk-size line (size and extensions) longer than this is refused (hyper's limit).
const MAX_CHUNK_LINE: usize = 16 * 1024;
/// Trailers longer than this are refused (hyper's limit).
const MAX_TRAILERS: usize = 16 * 1024;
/// A buffer grown past this by one large answer is given back afterwards, so
/// one big download does not stay with the VU for the rest of the run.
const KEEP_BUFFER: usize = 64 * 1024;
/// Bodies up to this size are copied behind the head, for one write per request.
const ONE_WRITE_BODY: usize = 16 * 1024;

/// Why an exchange failed; the engine counts each as an `io` error.
#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server closed the connection before the answer was complete")]
    Closed,
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("status code {0} is out of range")]
    Status(u16),
    #[error("invalid Content-Length")]
    ContentLength,
    #[error("Transfer-Encoding in an HTTP/1.0 response")]
    TransferEncodingInHttp10,
    #[error("malformed chunked body")]
    Chunked,
    #[error("chunk extensions or trailers too long")]
    ChunkedTooLong,
}

/// What a VU keeps across requests and reconnects: the request it writes, the
/// answer it reads, and where in it the headers and the body are.
pub struct Buffers {
    write: Vec<u8>,
    /// Always initialised to its length; `filled` bytes of it are the answer.
    read: Vec<u8>,
    filled: usize,
    status: StatusCode,
    headers: Vec<(Range<usize>, Range<usize>)>,
    body: Range<usize>,
}

impl Default for Buffers {
    fn default() -> Buffers {
        Buffers::new()
    }
}

impl Buffers {
    pub fn new() -> Buffers {
        Buffers {
            write: Vec::with_capacity(1024),
            read: vec![0; INIT_BUFFER],
            filled: 0,
            status: StatusCode::OK,
            headers: Vec::with_capacity(16),
            body: 0..0,
        }
    }

    /// The last answer read; meaningful only after an exchange succeeded.
    pub fn answer(&self) -> Answer<'_> {
        Answer {
            status: self.status,
            headers: Headers {
                buf: &self.read,
                spans: &self.headers,
            },
            body: self.read.get(self.body.clone()).unwrap_or_default(),
        }
    }

    /// Makes room for at least one more read, up to `want` bytes in all
    /// (doubling, so a large declared length costs only what arrives).
    fn room(&mut self, want: usize) {
        if self.filled == self.read.len() {
            let grown = (self.read.len() * 2)
                .max(INIT_BUFFER)
                .min(want.max(self.filled + 1));
            self.read.resize(grown, 0);
        }
    }

    async fn fill<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        want: usize,
    ) -> Result<(), Http1Error> {
        self.room(want);
        let n = io.read(&mut self.read[self.filled..]).await?;
        if n == 0 {
            return Err(Http1Error::Closed);
        }
        self.filled += n;
        Ok(())
    }
}

/// An answer, borrowed from the VU's buffers until its next request.
pub struct Answer<'a> {
    pub status: StatusCode,
    pub headers: Headers<'a>,
    pub body: &'a [u8],
}

/// The answer's headers in the order received, names as sent.
#[derive(Clone, Copy)]
pub struct Headers<'a> {
    buf: &'a [u8],
    spans: &'a [(Range<usize>, Range<usize>)],
}

impl<'a> Headers<'a> {
    /// The first value of `name` (any case), as `HeaderMap::get` gave it.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The first value of `name` when it is visible ASCII, as
    /// `HeaderValue::to_str` allows.
    pub fn get_str(&self, name: &str) -> Option<&'a str> {
        self.get(name).and_then(visible_ascii)
    }

    /// Every value of `name`, in order.
    pub fn get_all<'n>(&self, name: &'n str) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// (name, value) pairs in the order received.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + use<'a> {
        let buf = self.buf;
        self.spans.iter().map(move |(n, v)| {
            (
                buf.get(n.clone()).unwrap_or_default(),
                buf.get(v.clone()).unwrap_or_default(),
            )
        })
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// `HeaderValue::to_str`'s rule: tab and visible ASCII only.
fn visible_ascii(value: &[u8]) -> Option<&str> {
    if value
        .iter()
        .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b))
    {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// Whether an idle keep-alive connection can no longer carry a request: the
/// server closed it (or sent something unasked). Asked without waiting, so a
/// request that would go out on a dead connection goes on a new one instead,
/// as hyper's connection task noticed the close while idle. Costs no system
/// call when nothing arrived: tokio answers from its readiness state.
pub fn closed_while_idle<S: AsyncRead + Unpin>(io: &mut S) -> bool {
    let mut probe = [0u8; 1];
    let mut buf = ReadBuf::new(&mut probe);
    let mut cx = Context::from_waker(Waker::noop());
    // Anything ready (end of stream, unasked bytes, an error) means the
    // connection cannot carry a request.
    Pin::new(io).poll_read(&mut cx, &mut buf).is_ready()
}

/// Writes `request` and reads its whole answer into `buffers`; `Ok(true)`
/// when the connection can carry another request.
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    buffers: &mut Buffers,
    request: &Request<Full<Bytes>>,
) -> Result<bool, Http1Error> {
    let body = body_bytes(request.body());
    let tail = encode_request(request, &body, &mut buffers.write);
    io.write_all(&buffers.write).await?;
    if let Some(tail) = tail {
        io.write_all(&tail.chunk_head).await?;
        io.write_all(&body).await?;
        io.write_all(tail.after).await?;
    }
    // A no-op for TCP; TLS may hold the records until flushed.
    io.flush().await?;
    let keep_alive = read_response(io, buffers, request.method() == Method::HEAD).await?;
    Ok(keep_alive && !asks_to_close(request))
}

/// A request whose every byte but one header's value is known before the
/// run, encoded once: a fixed step is written from it each time, without
/// building a `Request`, cloning its headers and encoding them again (about
/// a tenth of the per-request time in user space against a fast target).
/// The hole is for the correlation id, the one value that varies.
#[derive(Clone)]
pub struct Encoded {
    bytes: Vec<u8>,
    /// Where the per-request value goes, when the request has one.
    hole: Option<usize>,
    head: bool,
    close: bool,
}

impl Encoded {
    /// `request` as written; `hole`: the header whose value is given per
    /// request, set in `request` to a placeholder that is not written.
    /// `None` when the body is too large to go in the head's write, or the
    /// placeholder is not found in the head.
    pub fn new(request: &Request<Full<Bytes>>, hole: Option<(&str, &str)>) -> Option<Encoded> {
        let body = body_bytes(request.body());
        let mut bytes = Vec::new();
        if encode_request(request, &body, &mut bytes).is_some() {
            return None;
        }
        let hole = match hole {
            None => None,
            Some((name, placeholder)) => {
                let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 2;
                let line = format!("\r\n{}: {placeholder}\r\n", name.to_ascii_lowercase());
                let at = bytes[..head_end + 2]
                    .windows(line.len())
                    .position(|w| w == line.as_bytes())?
                    + 2
                    + name.len()
                    + 2;
                bytes.drain(at..at + placeholder.len());
                Some(at)
            }
        };
        bytes.shrink_to_fit();
        Some(Encoded {
            bytes,
            hole,
            head: request.method() == Method::HEAD,
            close: asks_to_close(request),
        })
    }

    /// The bytes written, with `value` in the hole.
    pub fn write_to(&self, value: &[u8], out: &mut Vec<u8>) {
        out.clear();
        match self.hole {
            None => out.extend_from_slice(&self.bytes),
            Some(at) => {
                out.extend_from_slice(&self.bytes[..at]);
                out.extend_from_slice(value);
                out.extend_from_slice(&self.bytes[at..]);
            }
        }
    }
}

/// The bytes may hold an API key: never shown.
impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Encoded({} bytes, hole {:?})",
            self.bytes.len(),
            self.hole
        )
    }
}

/// `exchange` for a request encoded before the run, with `value` (the
/// correlation id) in its hole.
pub async fn exchange_encoded<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    buffers: &mut Buffers,
    request: &Encoded,
    value: &[u8],
) -> Result<bool, Http1Error> {
    if request.hole.is_some() {
        request.write_to(value, &mut buffers.write);
        io.write_all(&buffers.write).await?;
    } else {
        io.write_all(&request.bytes).await?;
    }
    io.flush().await?;
    let keep_alive = read_response(io, buffers, request.head).await?;
    Ok(keep_alive && !request.close)
}

fn asks_to_close(request: &Request<Full<Bytes>>) -> bool {
    connection_has(
        request
            .headers()
            .get_all(CONNECTION)
            .iter()
            .map(|v| v.as_bytes()),
        "close",
    )
}

/// The bytes of a body already whole in memory: `Full` yields its one frame
/// at the first poll, so no runtime is needed.
fn body_bytes(body: &Full<Bytes>) -> Bytes {
    use hyper::body::Body as _;
    let mut body = body.clone();
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut body).poll_frame(&mut cx) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}

/// What follows the head when the body is too large to copy behind it.
struct Tail {
    chunk_head: Vec<u8>,
    after: &'static [u8],
}

/// The request head, and the body when it fits, as hyper 1's client writes
/// them: request line in origin form, headers in the map's order with their
/// names in lower case, `content-length` added last for a body that lacks
/// it; a user's `Transfer-Encoding` makes the body one chunk.
fn encode_request(request: &Request<Full<Bytes>>, body: &[u8], out: &mut Vec<u8>) -> Option<Tail> {
    out.clear();
    out.extend_from_slice(request.method().as_str().as_bytes());
    out.push(b' ');
    let uri = request.uri();
    if uri.scheme().is_some() || uri.authority().is_some() {
        out.extend_from_slice(uri.to_string().as_bytes());
    } else {
        out.extend_from_slice(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let headers = request.headers();
    let chunked = !body.is_empty() && headers.contains_key(TRANSFER_ENCODING);
    // hyper keeps a valid Content-Length the user gave and adds one otherwise.
    let given_length = !body.is_empty()
        && !chunked
        && matches!(
            content_length(headers.get_all(CONTENT_LENGTH).iter().map(|v| v.as_bytes())),
            Length::Valid(_)
        );
    let last_te = headers.get_all(TRANSFER_ENCODING).iter().next_back();
    for (name, value) in headers {
        let skip = if body.is_empty() {
            // No body: hyper drops a Transfer-Encoding, keeps a Content-Length.
            name == TRANSFER_ENCODING
        } else {
            name == CONTENT_LENGTH && !given_length
        };
        if skip {
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        if chunked
            && name == TRANSFER_ENCODING
            && last_te.is_some_and(|last| std::ptr::eq(last, value))
            && !is_chunked(value.as_bytes())
        {
            out.extend_from_slice(b", chunked");
        }
        out.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() && !chunked && !given_length {
        out.extend_from_slice(b"content-length: ");
        push_decimal(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if body.is_empty() {
        return None;
    }
    let mut chunk_head = Vec::new();
    let after: &'static [u8] = if chunked {
        chunk_head.extend_from_slice(format!("{:X}\r\n", body.len()).as_bytes());
        b"\r\n0\r\n\r\n"
    } else {
        b""
    };
    if body.len() <= ONE_WRITE_BODY {
        out.extend_from_slice(&chunk_head);
        out.extend_from_slice(body);
        out.extend_from_slice(after);
        None
    } else {
        Some(Tail { chunk_head, after })
    }
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// How the answer's body ends.
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

#[derive(Debug, PartialEq, Eq)]
enum Length {
    Absent,
    Valid(u64),
    Invalid,
}

/// hyper's `content_length_parse_all`: every value, comma-separated lists
/// included, must be the same decimal number.
fn content_length<'v>(values: impl Iterator<Item = &'v [u8]>) -> Length {
    let mut found = Length::Absent;
    for value in values {
        // The common case, one plain number, without the text handling below.
        if (1..=19).contains(&value.len()) && value.iter().all(u8::is_ascii_digit) {
            let n = value
                .iter()
                .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
            match found {
                Length::Absent => found = Length::Valid(n),
                Length::Valid(m) if m == n => {}
                _ => return Length::Invalid,
            }
            continue;
        }
        let Some(line) = visible_ascii(value) else {
            return Length::Invalid;
        };
        for part in line.split(',') {
            let part = part.trim();
            let n = (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u64>().ok())
                .flatten();
            match (n, &found) {
                (None, _) => return Length::Invalid,
                (Some(n), Length::Absent) => found = Length::Valid(n),
                (Some(n), Length::Valid(m)) if n == *m => {}
                _ => return Length::Invalid,
            }
        }
    }
    found
}

/// Whether the last coding listed is `chunked`.
fn is_chunked(value: &[u8]) -> bool {
    visible_ascii(value)
        .and_then(|s| s.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

fn connection_has<'v>(mut values: impl Iterator<Item = &'v [u8]>, token: &str) -> bool {
    values.any(|v| {
        visible_ascii(v).is_some_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

fn offset_in(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(base.as_ptr() as usize);
    start..start + part.len()
}

/// A parsed head: its length, and whether the connection stays open after it.
struct Head {
    len: usize,
    framing: Framing,
    keep_alive: bool,
}

/// Parses the head at the start of `buffers.read`; `None` when incomplete.
/// Records the status and the header spans.
fn parse_head(buffers: &mut Buffers, head_request: bool) -> Result<Option<Head>, Http1Error> {
    let bytes = &buffers.read[..buffers.filled];
    let mut storage =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        bytes,
        &mut storage,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Http1Error::Head(e)),
    };
    let code = response.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| Http1Error::Status(code))?;
    let http11 = response.version == Some(1);
    buffers.headers.clear();
    let mut keep_alive = http11;
    let mut saw_close = false;
    let mut te_last: Option<&[u8]> = None;
    let mut has_length = false;
    for header in response.headers.iter() {
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") {
            // Once any Connection line asks to close, a later keep-alive does not undo it.
            if saw_close || connection_has(std::iter::once(header.value), "close") {
                saw_close = true;
                keep_alive = false;
            } else if !keep_alive {
                keep_alive = connection_has(std::iter::once(header.value), "keep-alive");
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te_last = Some(header.value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            has_length = true;
        }
        buffers
            .headers
            .push((offset_in(bytes, name), offset_in(bytes, header.value)));
    }
    buffers.status = status;
    let framing = match code {
        101 => {
            // An upgrade we never asked for: nothing more can be read as HTTP.
            return Ok(Some(Head {
                len,
                framing: Framing::None,
                keep_alive: false,
            }));
        }
        100..=199 => Framing::None,
        204 | 304 => Framing::None,
        _ if head_request => Framing::None,
        _ => match te_last {
            Some(_) if !http11 => return Err(Http1Error::TransferEncodingInHttp10),
            Some(te) if is_chunked(te) => Framing::Chunked,
            Some(_) => Framing::Close,
            None if has_length => {
                let values = response
                    .headers
                    .iter()
                    .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .map(|h| h.value);
                match content_length(values) {
                    Length::Valid(n) => Framing::Length(n),
                    _ => return Err(Http1Error::ContentLength),
                }
            }
            None => Framing::Close,
        },
    };
    Ok(Some(Head {
        len,
        framing,
        keep_alive,
    }))
}

/// Reads one whole answer into `buffers`; `Ok(true)` when the connection
/// stays open. Informational answers (100 Continue and the like) are skipped.
pub async fn read_response<S: AsyncRead + Unpin>(
    io: &mut S,
    buffers: &mut Buffers,
    head_request: bool,
) -> Result<bool, Http1Error> {
    if buffers.read.len() > KEEP_BUFFER {
        buffers.read = vec![0; INIT_BUFFER];
    }
    buffers.filled = 0;
    buffers.body = 0..0;
    let head = loop {
        match parse_head(buffers, head_request)? {
            Some(head)
                if (100..200).contains(&buffers.status.as_u16())
                    && buffers.status != StatusCode::SWITCHING_PROTOCOLS =>
            {
                // Skipped; what follows it is the next head.
                buffers.read.copy_within(head.len..buffers.filled, 0);
                buffers.filled -= head.len;
            }
            Some(head) => break head,
            None if buffers.filled >= MAX_HEAD => return Err(Http1Error::HeadTooLarge),
            None => buffers.fill(io, MAX_HEAD).await?,
        }
    };
    let start = head.len;
    let (end, complete_at, keep_alive) = match head.framing {
        Framing::None => (start, start, head.keep_alive),
        Framing::Length(n) => {
            let want = usize::try_from(n)
                .ok()
                .and_then(|n| start.checked_add(n))
                .ok_or(Http1Error::ContentLength)?;
            while buffers.filled < want {
                buffers.fill(io, want).await?;
            }
            (want, want, head.keep_alive)
        }
        Framing::Close => {
            loop {
                buffers.room(usize::MAX);
                let filled = buffers.filled;
                let n = io.read(&mut buffers.read[filled..]).await?;
                if n == 0 {
                    break;
                }
                buffers.filled += n;
            }
            (buffers.filled, buffers.filled, false)
        }
        Framing::Chunked => {
            let (end, done) = read_chunked(io, buffers, start).await?;
            (end, done, head.keep_alive)
        }
    };
    buffers.body = start..end;
    // Bytes past the answer were never asked for; the connection's framing
    // cannot be trusted after them.
    Ok(keep_alive && buffers.filled == complete_at)
}

enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// Decodes a chunked body in place behind the head: data is moved down over
/// the chunk framing as it is read. Returns the body's end and where the raw
/// message ended.
async fn read_chunked<S: AsyncRead + Unpin>(
    io: &mut S,
    buffers: &mut Buffers,
    start: usize,
) -> Result<(usize, usize), Http1Error> {
    // Decoded data is `start..out`; raw, not yet decoded bytes are `pos..filled`.
    let mut out = start;
    let mut pos = start;
    let mut state = Chunk::Size;
    loop {
        let raw = &buffers.read[pos..buffers.filled];
        let progressed = match state {
            Chunk::Size => match httparse::parse_chunk_size(raw) {
                Ok(httparse::Status::Complete((used, size))) => {
                    pos += used;
                    state = if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    };
                    true
                }
                Ok(httparse::Status::Partial) if raw.len() > MAX_CHUNK_LINE => {
                    return Err(Http1Error::ChunkedTooLong);
                }
                Ok(httparse::Status::Partial) => false,
                Err(_) => return Err(Http1Error::Chunked),
            },
            Chunk::Data(left) => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(raw.len());
                if take == 0 {
                    false
                } else {
                    buffers.read.copy_within(pos..pos + take, out);
                    out += take;
                    pos += take;
                    let left = left - take as u64;
                    state = if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    };
                    true
                }
            }
            Chunk::DataEnd => match raw {
                [b'\r', b'\n', ..] => {
                    pos += 2;
                    state = Chunk::Size;
                    true
                }
                [] | [b'\r'] => false,
                _ => return Err(Http1Error::Chunked),
            },
            Chunk::Trailers => {
                let mut trailers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match httparse::parse_headers(raw, &mut trailers) {
                    Ok(httparse::Status::Complete((used, _))) => {
                        pos += used;
                        // Trailers are not part of the answer the engine sees
                        // (hyper's collected body dropped them too).
                        return Ok((out, pos));
                    }
                    Ok(httparse::Status::Partial) if raw.len() > MAX_TRAILERS => {
                        return Err(Http1Error::ChunkedTooLong);
                    }
                    Ok(httparse::Status::Partial) => false,
                    Err(_) => return Err(Http1Error::Chunked),
                }
            }
        };
        if !progressed {
            // Move what is left of the raw bytes down behind the decoded data,
            // so the buffer grows only with the body, then read more.
            let left = buffers.filled - pos;
            buffers.read.copy_within(pos..buffers.filled, out);
            pos = out;
            buffers.filled = out + left;
            buffers.fill(io, usize::MAX).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::io;

    /// A connection that answers with the given reads, one per `read` call,
    /// then end of stream; what is written is kept.
    struct Scripted {
        reads: VecDeque<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Scripted {
        fn new(reads: Vec<Vec<u8>>) -> Scripted {
            Scripted {
                reads: reads.into(),
                written: Vec::new(),
            }
        }
    }

    impl AsyncRead for Scripted {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut next) = self.reads.pop_front() {
                let n = next.len().min(buf.remaining());
                buf.put_slice(&next[..n]);
                if n < next.len() {
                    next.drain(..n);
                    self.reads.push_front(next);
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Scripted {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.written.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    struct Seen {
        status: u16,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        body: Vec<u8>,
        keep_alive: bool,
    }

    fn read_all(reads: Vec<Vec<u8>>, head: bool) -> Result<Seen, Http1Error> {
        block_on(async {
            let mut io = Scripted::new(reads);
            let mut buffers = Buffers::new();
            let keep_alive = read_response(&mut io, &mut buffers, head).await?;
            let answer = buffers.answer();
            Ok(Seen {
                status: answer.status.as_u16(),
                headers: answer
                    .headers
                    .iter()
                    .map(|(n, v)| (n.to_vec(), v.to_vec()))
                    .collect(),
                body: answer.body.to_vec(),
                keep_alive,
            })
        })
    }

    fn one(text: &[u8]) -> Result<Seen, Http1Error> {
        read_all(vec![text.to_vec()], false)
    }

    #[test]
    fn content_length_body() {
        let seen = one(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello").unwrap();
        assert_eq!(seen.status, 200);
        assert_eq!(seen.body, b"hello");
        assert!(seen.keep_alive);
        assert_eq!(seen.headers[1], (b"X-A".to_vec(), b"b".to_vec()));
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let seen = one(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n1;a;b=\"c\"\r\n \r\n5\r\nworld\r\n0;last\r\nX-Trailer: t\r\nX-Other: o\r\n\r\n",
        )
        .unwrap();
        assert_eq!(seen.body, b"hello world");
        assert!(seen.keep_alive);
        assert_eq!(seen.headers.len(), 1, "trailers are not headers");
    }

    #[test]
    fn close_delimited_body_ends_the_connection() {
        let seen = one(b"HTTP/1.1 200 OK\r\n\r\nuntil the end").unwrap();
        assert_eq!(seen.body, b"until the end");
        assert!(!seen.keep_alive);
    }

    #[test]
    fn no_body_for_head_204_304_even_with_a_length() {
        let seen = read_all(
            vec![b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n".to_vec()],
            true,
        )
        .unwrap();
        assert_eq!(
            (seen.status, seen.body.len(), seen.keep_alive),
            (200, 0, true)
        );
        for status in ["204 No Content", "304 Not Modified"] {
            let text = format!("HTTP/1.1 {status}\r\nContent-Length: 4\r\n\r\n");
            let seen = one(text.as_bytes()).unwrap();
            assert!(seen.body.is_empty() && seen.keep_alive);
        }
    }

    #[test]
    fn informational_answers_are_skipped() {
        let seen = one(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!((seen.status, seen.body.as_slice()), (201, &b"ok"[..]));
    }

    #[test]
    fn connection_close_and_http10_without_keep_alive_end_the_connection() {
        let seen =
            one(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        assert!(!seen.keep_alive);
        let seen = one(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(!seen.keep_alive);
        let seen =
            one(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(seen.keep_alive);
    }

    #[test]
    fn bytes_past_the_answer_end_the_connection() {
        let seen = one(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxHTTP/1.1").unwrap();
        assert_eq!(seen.body, b"x");
        assert!(!seen.keep_alive);
    }

    #[test]
    fn malformed_answers_are_errors() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 2x0 OK\r\n\r\n",
            b"HTTX/1.1 200 OK\r\n\r\n",
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX:\x01\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
        ];
        for case in cases {
            assert!(one(case).is_err(), "{}", String::from_utf8_lossy(case));
        }
    }

    #[test]
    fn an_answer_cut_short_is_an_error() {
        for text in [
            &b"HTTP/1.1 200 OK\r\nContent-Le"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
            b"",
        ] {
            assert!(matches!(one(text), Err(Http1Error::Closed)));
        }
    }

    #[test]
    fn an_endless_head_is_refused() {
        let mut text = b"HTTP/1.1 200 OK\r\n".to_vec();
        while text.len() < MAX_HEAD + 100 {
            text.extend_from_slice(b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(one(&text).is_err());
    }

    #[test]
    fn a_body_larger_than_the_buffer_and_the_buffer_given_back() {
        let body = vec![b'z'; 3 * KEEP_BUFFER];
        let mut text =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        text.extend_from_slice(&body);
        block_on(async {
            let mut io = Scripted::new(vec![text, b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()]);
            let mut buffers = Buffers::new();
            assert!(read_response(&mut io, &mut buffers, false).await.unwrap());
            assert_eq!(buffers.answer().body, &body[..]);
            assert!(read_response(&mut io, &mut buffers, false).await.unwrap());
            assert_eq!(buffers.read.len(), INIT_BUFFER);
        });
    }

    fn request(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &'static [u8],
    ) -> Request<Full<Bytes>> {
        let mut builder = Request::builder().method(method).uri(uri);
        for (n, v) in headers {
            builder = builder.header(*n, *v);
        }
        builder.body(Full::new(Bytes::from_static(body))).unwrap()
    }

    fn written(request: &Request<Full<Bytes>>) -> Vec<u8> {
        block_on(async {
            let mut io = Scripted::new(vec![b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()]);
            let mut buffers = Buffers::new();
            exchange(&mut io, &mut buffers, request).await.unwrap();
            io.written
        })
    }

    #[test]
    fn requests_are_written_as_hyper_writes_them() {
        let get = request(
            "GET",
            "/a/b?c=d",
            &[("host", "h"), ("x-a", "1"), ("x-a", "2")],
            b"",
        );
        assert_eq!(
            written(&get),
            b"GET /a/b?c=d HTTP/1.1\r\nhost: h\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
        let post = request("POST", "/u", &[("host", "h")], b"{}");
        assert_eq!(
            written(&post),
            b"POST /u HTTP/1.1\r\nhost: h\r\ncontent-length: 2\r\n\r\n{}"
        );
        let given = request(
            "PUT",
            "/u",
            &[("content-length", "2"), ("host", "h")],
            b"{}",
        );
        assert_eq!(
            written(&given),
            b"PUT /u HTTP/1.1\r\ncontent-length: 2\r\nhost: h\r\n\r\n{}"
        );
        let chunked = request("POST", "/u", &[("transfer-encoding", "gzip")], b"hello");
        assert_eq!(
            written(&chunked),
            b"POST /u HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        let empty = request("DELETE", "/u", &[("transfer-encoding", "chunked")], b"");
        assert_eq!(written(&empty), b"DELETE /u HTTP/1.1\r\n\r\n");
    }

    #[test]
    fn an_encoded_request_is_written_and_read_as_a_built_one() {
        let cases = [
            request("GET", "/a?b=c", &[("host", "h"), ("x-a", "1")], b""),
            request("POST", "/u", &[("host", "h")], b"{\"id\":1}"),
            request("POST", "/u", &[("transfer-encoding", "gzip")], b"hello"),
            request("GET", "/", &[("connection", "close")], b""),
            request("HEAD", "/", &[("host", "h")], b""),
        ];
        // A HEAD's answer declares a length but carries no body.
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc".to_vec();
        for built in &cases {
            let encoded = Encoded::new(built, None).expect("a small request is encoded");
            let (built_reuse, encoded_reuse, body) = block_on(async {
                let mut io = Scripted::new(vec![answer.clone()]);
                let mut buffers = Buffers::new();
                let a = exchange(&mut io, &mut buffers, built).await.unwrap();
                let built_bytes = io.written;
                let mut io = Scripted::new(vec![answer.clone()]);
                let mut buffers = Buffers::new();
                let b = exchange_encoded(&mut io, &mut buffers, &encoded, b"")
                    .await
                    .unwrap();
                assert_eq!(io.written, built_bytes);
                (a, b, buffers.answer().body.to_vec())
            });
            assert_eq!(built_reuse, encoded_reuse, "{:?}", built.method());
            let head = built.method() == Method::HEAD;
            assert_eq!(body, if head { b"".to_vec() } else { b"abc".to_vec() });
        }
        assert_eq!(
            format!("{:?}", Encoded::new(&cases[0], None).unwrap()),
            "Encoded(40 bytes, hole None)"
        );
        static LARGE: [u8; 20_000] = [b'q'; 20_000];
        let large = request("POST", "/u", &[], &LARGE);
        assert!(
            Encoded::new(&large, None).is_none(),
            "a body past one write is sent as built"
        );
    }

    #[test]
    fn the_hole_takes_each_request_s_value_where_the_placeholder_was() {
        let with = |value: &str| {
            request(
                "POST",
                "/u",
                &[("host", "h"), ("X-Id", value), ("x-b", "2")],
                b"X-Id: PLACE",
            )
        };
        let encoded = Encoded::new(&with("PLACE"), Some(("X-Id", "PLACE"))).expect("encoded");
        for value in ["run-1-0", "run-123456789-3", ""] {
            let mut out = Vec::new();
            encoded.write_to(value.as_bytes(), &mut out);
            assert_eq!(out, written(&with(value)), "{value}");
        }
        let written_once = block_on(async {
            let mut io = Scripted::new(vec![b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()]);
            let mut buffers = Buffers::new();
            exchange_encoded(&mut io, &mut buffers, &encoded, b"run-7-1")
                .await
                .unwrap();
            io.written
        });
        assert_eq!(written_once, written(&with("run-7-1")));
        // A placeholder only in the body is no hole.
        let absent = request("POST", "/u", &[("host", "h")], b"x-id: PLACE\r\n");
        assert!(Encoded::new(&absent, Some(("x-id", "PLACE"))).is_none());
    }

    #[test]
    fn a_large_body_is_written_whole() {
        static BODY: [u8; 40_000] = [b'q'; 40_000];
        let post = request("POST", "/big", &[], &BODY);
        let out = written(&post);
        assert!(out.starts_with(b"POST /big HTTP/1.1\r\ncontent-length: 40000\r\n\r\n"));
        assert!(out.ends_with(&BODY));
    }

    #[test]
    fn headers_are_found_in_any_case_first_value_first() {
        let seen = block_on(async {
            let mut io = Scripted::new(vec![b"HTTP/1.1 200 OK\r\nX-Id: one\r\nx-id: two\r\nX-Bin: \xff\r\nContent-Length: 0\r\n\r\n".to_vec()]);
            let mut buffers = Buffers::new();
            read_response(&mut io, &mut buffers, false).await.unwrap();
            let a = buffers.answer();
            (
                a.headers.get_str("x-id").map(str::to_string),
                a.headers.get_all("X-ID").count(),
                a.headers.get("x-bin").map(<[u8]>::to_vec),
                a.headers.get_str("x-bin").is_none(),
            )
        });
        assert_eq!(seen, (Some("one".into()), 2, Some(vec![0xff]), true));
    }

    mod chunkings {
        use super::*;
        use proptest::prelude::*;

        const VALID: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nX-A: b\r\n\r\nhello world",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-B: c\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nT: x\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n{\"message\":\"no\"}",
            b"HTTP/1.1 204 No Content\r\nDate: today\r\n\r\n",
        ];

        fn split(text: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (text.len() + 1)).collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut last = 0;
            for cut in cuts.into_iter().chain([text.len()]) {
                if cut > last {
                    parts.push(text[last..cut].to_vec());
                    last = cut;
                }
            }
            parts
        }

        /// hyper's rule as text: every comma-separated part of every value is
        /// the same decimal number.
        fn reference_length(values: &[String]) -> Length {
            let parts: Vec<&str> = values
                .iter()
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect();
            let numbers: Option<Vec<u64>> = parts
                .iter()
                .map(|p| {
                    (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| p.parse().ok())
                        .flatten()
                })
                .collect();
            match numbers {
                None => Length::Invalid,
                Some(n) if n.is_empty() => Length::Absent,
                Some(n) if n.iter().all(|x| *x == n[0]) => Length::Valid(n[0]),
                Some(_) => Length::Invalid,
            }
        }

        proptest! {
            #[test]
            fn content_length_follows_hyper_s_rule(values in proptest::collection::vec("[0-9]{0,21}|[0-9 ,]{0,8}|1[0-9a ]{0,3}", 0..4)) {
                let bytes: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
                prop_assert_eq!(content_length(bytes.into_iter()), reference_length(&values));
            }

            #[test]
            fn any_split_reads_the_same_answer(which in 0..VALID.len(), cuts in proptest::collection::vec(0usize..400, 0..40)) {
                let text = VALID[which];
                let whole = one(text).unwrap();
                let parts = split(text, &cuts);
                prop_assert_eq!(parts.concat(), text.to_vec());
                let seen = read_all(parts, false).unwrap();
                prop_assert_eq!(seen.status, whole.status);
                prop_assert_eq!(seen.headers, whole.headers);
                prop_assert_eq!(seen.body, whole.body);
                prop_assert_eq!(seen.keep_alive, whole.keep_alive);
            }

            #[test]
            fn one_byte_reads_read_the_same_answer(which in 0..VALID.len()) {
                let text = VALID[which];
                let whole = one(text).unwrap();
                let seen = read_all(text.iter().map(|b| vec![*b]).collect(), false).unwrap();
                prop_assert_eq!(seen.status, whole.status);
                prop_assert_eq!(seen.headers, whole.headers);
                prop_assert_eq!(seen.body, whole.body);
            }

            #[test]
            fn no_input_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), cuts in proptest::collection::vec(0usize..300, 0..10)) {
                let mut text = b"HTTP/1.1 200 OK\r\n".to_vec();
                text.extend_from_slice(&bytes);
                let _ = read_all(split(&text, &cuts), false);
            }
        }
    }
}
