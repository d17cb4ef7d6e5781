//! One iteration: the plan's steps in order, each request rendered from its
//! compiled templates, answered, checked, and its captures kept for the next.

use std::cell::RefCell;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Uri};
use http_body_util::Full;

use super::client::{Answer, Body, Connection, Connector, Encoded, Outgoing};
use crate::metrics::Metrics;
use crate::scenario::jsonpath::text_of;
use crate::scenario::template::{Template, Vars};
use crate::scenario::{CaptureSource, CheckKind, Expected, Plan, Predicate, Step};
use crate::verify::records::{InvocationRecord, Records, RequestId, WriteRecord};

/// An iteration due to start.
#[derive(Debug, Clone, Copy)]
pub struct Due {
    pub seq: u64,
    /// When it should start: latency counts from here, not from when a VU
    /// got to it, so a stalled server shows up in the numbers.
    pub at: Instant,
}

/// A virtual user: a connection and the state its iterations need.
pub struct Vu {
    /// 1-based, unique across threads and shards.
    pub id: u64,
    pub iterations: u64,
    pub connection: Connection,
    captures: Vec<Option<String>>,
    uuid: [u8; 36],
    /// This request's correlation id, written here to spare an allocation.
    correlation_id: String,
}

impl Vu {
    pub fn new(id: u64, plan: &Plan) -> Vu {
        Vu {
            id,
            iterations: 0,
            connection: Connection::new(id),
            captures: vec![None; plan.capture_slots],
            uuid: [b'0'; 36],
            correlation_id: String::new(),
        }
    }
}

/// Per-step offsets into the plan's flat check list.
pub fn check_offsets(plan: &Plan) -> Vec<usize> {
    let mut offsets = Vec::with_capacity(plan.steps.len());
    let mut next = 0;
    for step in &plan.steps {
        offsets.push(next);
        next += step.checks.len();
    }
    offsets
}

pub struct IterationContext<'a> {
    pub plan: &'a Plan,
    pub connector: &'a Connector,
    /// The measured phase's metrics, or the warmup's.
    pub metrics: &'a RefCell<Metrics>,
    /// The iteration was due in the warmup: its records say so.
    pub warmup: bool,
    pub records: &'a RefCell<Records>,
    pub check_offsets: &'a [usize],
    /// One per step.
    pub prepared: &'a [PreparedRequest],
    pub record: RecordWhat,
}

/// Runs one iteration and counts how it ended: completed (every step
/// answered and accepted) or failed (a request failed, or it ended early).
pub async fn run(cx: &IterationContext<'_>, vu: &mut Vu, due: Due) {
    let completed = steps(cx, vu, due).await;
    let mut metrics = cx.metrics.borrow_mut();
    if completed {
        metrics.iterations_completed += 1;
    } else {
        metrics.iterations_failed += 1;
    }
}

/// The steps in order; `false` when a request failed or the iteration ended early.
async fn steps(cx: &IterationContext<'_>, vu: &mut Vu, due: Due) -> bool {
    let plan = cx.plan;
    let mut all_accepted = true;
    vu.iterations += 1;
    vu.captures.iter_mut().for_each(|c| *c = None);
    let uuid_text = if plan.uses_uuid {
        uuid::Uuid::new_v4().hyphenated().encode_lower(&mut vu.uuid);
        std::str::from_utf8(&vu.uuid)
            .unwrap_or_default()
            .to_string()
    } else {
        String::new()
    };
    let mut step_due = due.at;
    for (index, step) in plan.steps.iter().enumerate() {
        let (vu_id, vu_iteration) = (vu.id, vu.iterations);
        let request_vars = Vars {
            uuid: &uuid_text,
            seq: due.seq,
            run_id: &plan.run_id,
            vu: vu_id,
            iteration: vu_iteration,
            captures: &vu.captures,
        };
        let prepared = &cx.prepared[index];
        vu.correlation_id.clear();
        let correlation_id = plan.verify.correlation_header.is_some().then(|| {
            plan.write_correlation_id(due.seq, index, &mut vu.correlation_id);
            vu.correlation_id.as_str()
        });
        let built;
        let outgoing = match &prepared.encoded {
            Some(encoded) => {
                Outgoing::Encoded(encoded, correlation_id.unwrap_or_default().as_bytes())
            }
            None => {
                let Some(mut request) =
                    build_request(plan, step, prepared, &request_vars, correlation_id)
                else {
                    // A rendered value is not valid in a request (e.g. a newline in a header).
                    let us = micros(Instant::now() - step_due);
                    cx.metrics.borrow_mut().steps[index].record_error(
                        crate::metrics::TransportError::Io,
                        us,
                        0,
                    );
                    return false;
                };
                plan.auth.apply(&mut request);
                built = request;
                Outgoing::Built(&built)
            }
        };
        let sent = Instant::now();
        let result = vu
            .connection
            .send(cx.connector, outgoing, sent + step.timeout)
            .await;
        let done = Instant::now();
        let latency_us = micros(done - step_due);
        let service_us = micros(done - sent);
        let answer = match result {
            Ok(answer) => answer,
            Err(error) => {
                cx.metrics.borrow_mut().steps[index].record_error(error, latency_us, service_us);
                return false;
            }
        };
        let status = answer.status.as_u16();
        let failed = match &step.expected_status {
            Some(codes) => !codes.contains(&status),
            None => status >= 400,
        };
        all_accepted &= !failed;
        let json = if step.needs_json {
            serde_json::from_slice::<serde_json::Value>(answer.body).ok()
        } else {
            None
        };
        // Captures first: a check may compare against a value just captured.
        let mut captured_all = true;
        for capture in &step.captures {
            let value = match &capture.source {
                CaptureSource::Json(path) => json
                    .as_ref()
                    .and_then(|j| path.lookup(j))
                    .map(|v| text_of(v).into_owned()),
                CaptureSource::Header(name) => {
                    answer.headers.get_str(name.as_str()).map(str::to_string)
                }
            };
            captured_all &= value.is_some();
            if let Some(slot) = vu.captures.get_mut(capture.slot) {
                *slot = value;
            }
        }
        let vars = Vars {
            uuid: &uuid_text,
            seq: due.seq,
            run_id: &plan.run_id,
            vu: vu_id,
            iteration: vu_iteration,
            captures: &vu.captures,
        };
        {
            let mut metrics = cx.metrics.borrow_mut();
            metrics.steps[index].record_response(status, latency_us, service_us, failed);
            let offset = cx.check_offsets[index];
            for (i, check) in step.checks.iter().enumerate() {
                let outcome =
                    evaluate(&check.kind, &answer, json.as_ref(), latency_us, &vars, step);
                metrics.record_check(offset + i, outcome.is_ok(), || {
                    let text = outcome.err().unwrap_or_default();
                    plan.secrets.check_example(&check.kind, text, vars.captures)
                });
            }
            if cx.record.invocations && reached_function(status) {
                cx.records.borrow_mut().invocations.push(InvocationRecord {
                    step: index as u32,
                    service_us: u32::try_from(service_us).unwrap_or(u32::MAX),
                    seq: due.seq,
                    request_id: request_id(&answer),
                    warmup: cx.warmup,
                });
            }
            if let (true, false, Some(writes)) = (cx.record.writes, failed, &step.writes) {
                let record =
                    WriteRecord::new(index as u32, due.seq, request_id(&answer), writes, |t| {
                        t.render(&vars)
                    });
                cx.records.borrow_mut().writes.push(record);
            }
        }
        if !captured_all {
            // Later steps would send requests built from missing values.
            return false;
        }
        step_due = done;
    }
    all_accepted
}

/// API Gateway answers 403 (no route, no auth) and 429 (throttled) itself,
/// without invoking the function.
fn reached_function(status: u16) -> bool {
    (200..500).contains(&status) && status != 403 && status != 429
}

fn request_id(answer: &Answer<'_>) -> RequestId {
    RequestId::parse(answer.headers.get_str("x-amzn-requestid"))
}

/// Which verification records the run keeps.
#[derive(Debug, Clone, Copy)]
pub struct RecordWhat {
    pub writes: bool,
    pub invocations: bool,
}

impl RecordWhat {
    pub fn for_plan(plan: &Plan) -> RecordWhat {
        let v = &plan.verify;
        let isolation = !v.isolate_from.is_empty();
        RecordWhat {
            writes: v.dynamodb || isolation,
            invocations: v.logs || isolation,
        }
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// What of a step's request is the same every time, built once per worker,
/// so a fixed path or header costs a clone per request instead of a render,
/// a parse and a hash (a fixed GET: 125 ns to build against 189 ns for a
/// templated one, `cargo bench -- render`).
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    /// Path and query, when no template in them varies.
    uri: Option<Uri>,
    /// Host, User-Agent, the default Content-Type and every header whose
    /// value is fixed; cloned per request.
    headers: HeaderMap,
    /// Headers rendered per request; the last of a name wins, as when written.
    rendered_headers: Vec<(HeaderName, Template)>,
    /// The whole request with a hole for the correlation id, when nothing
    /// else in it varies: no template, no signature (an API key is fixed).
    encoded: Option<Encoded>,
}

impl PreparedRequest {
    pub fn new(plan: &Plan, step: &Step, user_agent: &HeaderValue) -> PreparedRequest {
        let static_path = step.path.is_static() && step.query.iter().all(|(_, v)| v.is_static());
        let uri = static_path
            .then(|| {
                let mut text = String::new();
                render_path(step, &Vars::empty(), &mut text);
                Uri::try_from(text).ok()
            })
            .flatten();
        let mut headers = HeaderMap::new();
        headers.insert(HOST, plan.target.host_header.clone());
        headers.insert(USER_AGENT, user_agent.clone());
        // Later headers replace earlier ones of the same name (step over plan).
        let mut last: Vec<(&HeaderName, &Template)> = Vec::new();
        for (name, template) in plan.headers.iter().chain(&step.headers) {
            last.retain(|(n, _)| *n != name);
            last.push((name, template));
        }
        if step.body.is_some() && !last.iter().any(|(n, _)| *n == CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let mut rendered_headers = Vec::new();
        for (name, template) in last {
            let fixed = template
                .is_static()
                .then(|| HeaderValue::from_str(&template.render(&Vars::empty())).ok())
                .flatten();
            match fixed {
                Some(value) => {
                    headers.insert(name.clone(), value);
                }
                // Rendered per request; an invalid value then fails that request.
                None => rendered_headers.push((name.clone(), template.clone())),
            }
        }
        let mut prepared = PreparedRequest {
            uri,
            headers,
            rendered_headers,
            encoded: None,
        };
        let fixed = prepared.uri.is_some()
            && prepared.rendered_headers.is_empty()
            && step.body.as_ref().is_none_or(Template::is_static)
            && !matches!(plan.auth, crate::auth::Auth::Iam(_));
        // The id's run part must be valid in a header; the rest is digits.
        let hole = match &plan.verify.correlation_header {
            Some(name) => {
                let mut id = String::new();
                plan.write_correlation_id(0, 0, &mut id);
                HeaderValue::from_str(&id)
                    .is_ok()
                    .then_some(Some((name.as_str(), CORRELATION_PLACEHOLDER)))
            }
            None => Some(None),
        };
        if fixed
            && let Some(hole) = hole
            && let Some(mut request) = build_request(
                plan,
                step,
                &prepared,
                &Vars::empty(),
                hole.map(|(_, placeholder)| placeholder),
            )
        {
            plan.auth.apply(&mut request);
            prepared.encoded = Encoded::new(&request, hole);
        }
        prepared
    }

    /// Whether the step's request is written from bytes encoded before the run.
    pub fn is_encoded(&self) -> bool {
        self.encoded.is_some()
    }
}

/// Stands for the correlation id in a request encoded before the run.
const CORRELATION_PLACEHOLDER: &str = "stagecheck-correlation-id";

fn render_path(step: &Step, vars: &Vars<'_>, uri: &mut String) {
    step.path.render_into(vars, uri);
    for (i, (key, value)) in step.query.iter().enumerate() {
        uri.push(if i == 0 && !uri.contains('?') {
            '?'
        } else {
            '&'
        });
        uri.push_str(key);
        uri.push('=');
        value.render_into(vars, uri);
    }
}

/// The step's request for these values; `None` when a rendered value is not
/// valid in a request (a newline in a header, a space in the path).
pub fn build_request(
    plan: &Plan,
    step: &Step,
    prepared: &PreparedRequest,
    vars: &Vars<'_>,
    correlation_id: Option<&str>,
) -> Option<Request<Body>> {
    let uri = match &prepared.uri {
        Some(uri) => uri.clone(),
        None => {
            let mut text = String::with_capacity(64);
            render_path(step, vars, &mut text);
            Uri::try_from(text).ok()?
        }
    };
    let mut headers = prepared.headers.clone();
    if !prepared.rendered_headers.is_empty() {
        let mut value = String::new();
        for (name, template) in &prepared.rendered_headers {
            value.clear();
            template.render_into(vars, &mut value);
            headers.insert(name.clone(), HeaderValue::from_str(&value).ok()?);
        }
    }
    if let (Some(name), Some(id)) = (&plan.verify.correlation_header, correlation_id) {
        headers.insert(name.clone(), HeaderValue::from_str(id).ok()?);
    }
    let body = match &step.body {
        Some(template) => {
            let mut text = String::with_capacity(128);
            template.render_into(vars, &mut text);
            Bytes::from(text)
        }
        None => Bytes::new(),
    };
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = step.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Some(request)
}

/// `Ok` when the check passes; otherwise why not, for the report's example.
fn evaluate(
    kind: &CheckKind,
    answer: &Answer<'_>,
    json: Option<&serde_json::Value>,
    latency_us: u64,
    vars: &Vars<'_>,
    step: &Step,
) -> Result<(), String> {
    match kind {
        CheckKind::Status(codes) => {
            let status = answer.status.as_u16();
            if codes.contains(&status) {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        }
        CheckKind::Header { name, predicate } => {
            let found = answer
                .headers
                .get(name.as_str())
                .map(|v| String::from_utf8_lossy(v).into_owned());
            let found = found.map(serde_json::Value::String);
            predicate_holds(predicate, found.as_ref(), vars)
                .map_err(|why| format!("header {name}: {why}"))
        }
        CheckKind::Json { path, predicate } => {
            if json.is_none() && !matches!(predicate, Predicate::Exists(false)) {
                return Err(format!(
                    "the body is not JSON (status {})",
                    answer.status.as_u16()
                ));
            }
            let found = json.and_then(|j| path.lookup(j));
            predicate_holds(predicate, found, vars)
                .map_err(|why| format!("json {}: {why}", path.text))
        }
        CheckKind::BodyContains(text) => {
            let hay = String::from_utf8_lossy(answer.body);
            if hay.contains(text.as_str()) {
                Ok(())
            } else {
                Err(format!("body does not contain {text:?}"))
            }
        }
        CheckKind::LatencyUnder(limit) => {
            let took = std::time::Duration::from_micros(latency_us);
            if took < *limit {
                Ok(())
            } else {
                Err(format!("{} took {took:?}", step.name))
            }
        }
        CheckKind::Captured(slot) => match vars.captures.get(*slot) {
            Some(Some(_)) => Ok(()),
            _ => Err("not found in the answer".into()),
        },
    }
}

fn predicate_holds(
    predicate: &Predicate,
    found: Option<&serde_json::Value>,
    vars: &Vars<'_>,
) -> Result<(), String> {
    match (predicate, found) {
        (Predicate::Exists(true), Some(_)) | (Predicate::Exists(false), None) => Ok(()),
        (Predicate::Exists(true), None) => Err("missing".into()),
        (Predicate::Exists(false), Some(v)) => Err(format!("present ({})", short(v))),
        (_, None) => Err("missing".into()),
        (Predicate::Equals(Expected::Text(t)), Some(v)) => {
            let want = t.render(vars);
            if text_of(v) == want {
                Ok(())
            } else {
                Err(format!("{} != {want:?}", short(v)))
            }
        }
        (Predicate::Equals(Expected::Value(want)), Some(v)) => {
            let same = match (v.as_f64(), want.as_f64()) {
                (Some(a), Some(b)) => a == b,
                _ => v == want,
            };
            if same {
                Ok(())
            } else {
                Err(format!("{} != {want}", short(v)))
            }
        }
        (Predicate::Contains(t), Some(v)) => {
            let want = t.render(vars);
            if text_of(v).contains(&want) {
                Ok(())
            } else {
                Err(format!("{} does not contain {want:?}", short(v)))
            }
        }
    }
}

fn short(v: &serde_json::Value) -> String {
    let mut text = v.to_string();
    if text.len() > 80 {
        let mut cut = 77;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Overrides;
    use http::Method;
    use std::path::Path;

    const SCENARIO: &str = r#"
[target]
base_url = "http://127.0.0.1:9/{stage}"
stage = "test"
[headers]
X-Team = "platform"
X-Seq = "{{seq}}"
X-Override = "from-plan"
[verify]
correlation_header = "X-Correlation-Id"
[[steps]]
name = "create"
method = "POST"
path = "/user"
query = { dry = "no" }
headers = { X-Override = "step-{{vu}}" }
body = { Id = "{{uuid}}" }
[[steps]]
name = "upload"
method = "PUT"
path = "/user/{{seq}}"
headers = { Content-Type = "text/plain", X-Seq = "fixed" }
body = "seq {{seq}}"
"#;

    fn plan() -> Plan {
        crate::scenario::parse(Path::new("t.toml"), SCENARIO, &Overrides::default())
            .expect("scenario")
    }

    fn vars() -> Vars<'static> {
        Vars {
            uuid: "0d6b7c9e-0000-4000-8000-000000000001",
            seq: 42,
            run_id: "sc1",
            vu: 7,
            iteration: 1,
            captures: &[],
        }
    }

    fn header<'a>(request: &'a Request<Body>, name: &str) -> Option<&'a str> {
        request.headers().get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn prepared_parts_and_rendered_parts_make_the_request_as_written() {
        let plan = plan();
        let agent = HeaderValue::from_static("stagecheck/test");
        let step = &plan.steps[0];
        let prepared = PreparedRequest::new(&plan, step, &agent);
        assert!(
            prepared.uri.is_some(),
            "a fixed path and query are built once"
        );
        let request =
            build_request(&plan, step, &prepared, &vars(), Some("sc1-42-0")).expect("request");
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.uri().to_string(), "/test/user?dry=no");
        assert_eq!(header(&request, "host"), Some("127.0.0.1:9"));
        assert_eq!(header(&request, "user-agent"), Some("stagecheck/test"));
        assert_eq!(header(&request, "x-team"), Some("platform"));
        assert_eq!(header(&request, "x-seq"), Some("42"));
        // The step's header replaces the plan's, templated or not.
        assert_eq!(header(&request, "x-override"), Some("step-7"));
        assert_eq!(header(&request, "content-type"), Some("application/json"));
        assert_eq!(header(&request, "x-correlation-id"), Some("sc1-42-0"));

        let step = &plan.steps[1];
        let prepared = PreparedRequest::new(&plan, step, &agent);
        assert!(
            prepared.uri.is_none(),
            "a templated path is rendered per request"
        );
        let request = build_request(&plan, step, &prepared, &vars(), None).expect("request");
        assert_eq!(request.uri().to_string(), "/test/user/42");
        assert_eq!(header(&request, "content-type"), Some("text/plain"));
        assert_eq!(header(&request, "x-seq"), Some("fixed"));
        assert_eq!(header(&request, "x-correlation-id"), None);
    }

    #[test]
    fn only_a_step_with_nothing_varying_is_encoded_before_the_run() {
        let agent = HeaderValue::from_static("stagecheck/test");
        let fixed = r#"
[target]
base_url = "http://127.0.0.1:9/{stage}"
stage = "test"
[headers]
X-Team = "platform"
[[steps]]
name = "get"
method = "GET"
path = "/user?limit=1"
[[steps]]
name = "post"
method = "POST"
path = "/user"
body = { Id = "fixed" }
[[steps]]
name = "templated"
method = "GET"
path = "/user/{{seq}}"
"#;
        let plan = crate::scenario::parse(Path::new("t.toml"), fixed, &Overrides::default())
            .expect("scenario");
        let prepared: Vec<PreparedRequest> = plan
            .steps
            .iter()
            .map(|step| PreparedRequest::new(&plan, step, &agent))
            .collect();
        assert!(prepared[0].is_encoded() && prepared[1].is_encoded());
        assert!(
            !prepared[2].is_encoded(),
            "a templated path is rendered per request"
        );
        // With a correlation id (the default) the bytes are those of the
        // request build_request makes with it, as written.
        assert!(plan.verify.correlation_header.is_some());
        let built = build_request(
            &plan,
            &plan.steps[1],
            &prepared[1],
            &Vars::empty(),
            Some("sc-9-1"),
        )
        .expect("request");
        let mut bytes = Vec::new();
        let encoded = prepared[1].encoded.as_ref().expect("encoded");
        encoded.write_to(b"sc-9-1", &mut bytes);
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("POST /test/user HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("\r\nx-team: platform\r\n"), "{text}");
        assert!(text.contains("\r\nx-correlation-id: sc-9-1\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"Id\":\"fixed\"}"), "{text}");
        // Its headers and content-length, between the request line and the blank line.
        assert_eq!(
            built.headers().len() + 1,
            text.matches("\r\n").count() - 2,
            "{text}"
        );

        // Each thing that varies per request keeps the step built per request.
        let templated = self::plan();
        for step in &templated.steps {
            assert!(!PreparedRequest::new(&templated, step, &agent).is_encoded());
        }
        let mut uncorrelated =
            crate::scenario::parse(Path::new("t.toml"), fixed, &Overrides::default())
                .expect("scenario");
        uncorrelated.verify.correlation_header = None;
        let encoded = PreparedRequest::new(&uncorrelated, &uncorrelated.steps[0], &agent)
            .encoded
            .expect("encoded");
        encoded.write_to(b"ignored", &mut bytes);
        assert!(!String::from_utf8_lossy(&bytes).contains("correlation"));
        assert!(!String::from_utf8_lossy(&bytes).contains("ignored"));
    }

    #[test]
    fn a_rendered_value_that_is_not_valid_in_a_header_fails_only_that_request() {
        let plan = plan();
        let agent = HeaderValue::from_static("stagecheck/test");
        let mut step = plan.steps[0].clone();
        step.headers = vec![(
            HeaderName::from_static("x-name"),
            Template::literal("line\nbreak"),
        )];
        let prepared = PreparedRequest::new(&plan, &step, &agent);
        assert!(build_request(&plan, &step, &prepared, &vars(), None).is_none());
    }
}
