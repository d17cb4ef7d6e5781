//! Benchmarks of what the engine does per request: scheduling an iteration,
//! rendering a templated request, reading an answer off the connection,
//! recording a sample, checking a JSON answer, and merging histograms once a
//! second.

use std::future::Future;
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderValue;
use stagecheck::engine::http1::{Buffers, read_response};
use stagecheck::engine::iteration::{PreparedRequest, build_request};
use stagecheck::engine::schedule::ArrivalSchedule;
use stagecheck::metrics::{Metrics, StepMetrics, new_histogram};
use stagecheck::scenario::template::Vars;
use stagecheck::scenario::{Overrides, Profile};

const SCENARIO: &str = r#"
[target]
base_url = "http://127.0.0.1:8080/{stage}"
stage = "test"
[headers]
Accept = "application/json"
[load]
rate = 1000
duration = "10s"
[[steps]]
name = "create_user"
method = "POST"
path = "/user"
body = { Id = "{{uuid}}", Name = "user-{{seq}}", Email = "user-{{seq}}@example.com", Age = "{{random_int(18, 90)}}" }
checks = [{ status = [201] }, { json = "Id", equals = "{{uuid}}" }]
capture = { user_id = { json = "Id" } }
[[steps]]
name = "get_user"
method = "GET"
path = "/user/{{user_id}}"
[[steps]]
name = "health"
method = "GET"
path = "/health"
"#;

fn benches(c: &mut Criterion) {
    let plan =
        stagecheck::scenario::parse(Path::new("bench.toml"), SCENARIO, &Overrides::default())
            .expect("scenario");
    let agent = HeaderValue::from_static("stagecheck-bench");
    let prepared: Vec<PreparedRequest> = plan
        .steps
        .iter()
        .map(|step| PreparedRequest::new(&plan, step, &agent))
        .collect();
    let captures = vec![Some("5f0c3f3e-1b7e-4c3e-9a57-2b0f2a4f0e11".to_string())];
    let vars = Vars {
        uuid: "5f0c3f3e-1b7e-4c3e-9a57-2b0f2a4f0e11",
        seq: 12345,
        run_id: &plan.run_id,
        vu: 7,
        iteration: 3,
        captures: &captures,
    };

    c.bench_function("render POST request with JSON body", |b| {
        b.iter(|| {
            black_box(build_request(
                &plan,
                &plan.steps[0],
                &prepared[0],
                black_box(&vars),
                Some("sc1-12345-0"),
            ))
        })
    });
    c.bench_function("render GET request with capture", |b| {
        b.iter(|| {
            black_box(build_request(
                &plan,
                &plan.steps[1],
                &prepared[1],
                black_box(&vars),
                None,
            ))
        })
    });

    c.bench_function("render static GET request", |b| {
        b.iter(|| {
            black_box(build_request(
                &plan,
                &plan.steps[2],
                &prepared[2],
                black_box(&vars),
                None,
            ))
        })
    });

    let schedule = ArrivalSchedule::new(&Profile::constant(20_000.0, Duration::from_secs(600)));
    let mut k = 0u64;
    c.bench_function("schedule: time of iteration k", |b| {
        b.iter(|| {
            k = (k + 7919) % 10_000_000;
            black_box(schedule.time_of(black_box(k)))
        })
    });

    let mut step = StepMetrics::new();
    let mut v = 1u64;
    c.bench_function("record one response", |b| {
        b.iter(|| {
            v = v.wrapping_mul(6364136223846793005).wrapping_add(1);
            step.record_response(black_box(200), 200 + (v >> 50), 150 + (v >> 51), false);
        })
    });

    let body = br#"{"Id":"5f0c3f3e-1b7e-4c3e-9a57-2b0f2a4f0e11","Name":"user-12345","Email":"user-12345@example.com","Age":42}"#;
    c.bench_function("parse JSON answer and look up Id", |b| {
        b.iter(|| {
            let doc: serde_json::Value = serde_json::from_slice(black_box(body)).expect("json");
            black_box(
                doc.get("Id").and_then(|v| v.as_str())
                    == Some("5f0c3f3e-1b7e-4c3e-9a57-2b0f2a4f0e11"),
            )
        })
    });

    // In-memory reads never wait, so one poll finishes the read: what is
    // measured is the parsing and framing, not a runtime.
    let nginx: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 01:00:00 GMT\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: keep-alive\r\n\r\n{\"ok\":true}";
    let chunked: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n{\"ok\":\r\n5\r\ntrue}\r\n0\r\n\r\n";
    let mut buffers = Buffers::new();
    for (name, answer) in [
        ("read an nginx answer into the kept buffer", nginx),
        ("read a chunked answer into the kept buffer", chunked),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                let mut io = black_box(answer);
                let keep_alive = {
                    let read = std::pin::pin!(read_response(&mut io, &mut buffers, false));
                    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                    match read.poll(&mut cx) {
                        std::task::Poll::Ready(outcome) => outcome.expect("a valid answer"),
                        std::task::Poll::Pending => panic!("an in-memory read waited"),
                    }
                };
                black_box((keep_alive, buffers.answer().body.len()))
            })
        });
    }

    let mut one_second = Metrics::new(2, 3);
    let mut hist = new_histogram();
    for i in 0..20_000u64 {
        let _ = hist.record(100 + (i * 37) % 50_000);
    }
    one_second.steps[0].latency_us = hist.clone();
    one_second.steps[1].latency_us = hist;
    let mut totals = Metrics::new(2, 3);
    c.bench_function("merge a worker's one-second delta into totals", |b| {
        b.iter(|| totals.merge(black_box(&one_second)))
    });
}

criterion_group! {
    name = hot_path;
    config = Criterion::default().measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
    targets = benches
}
criterion_main!(hot_path);
