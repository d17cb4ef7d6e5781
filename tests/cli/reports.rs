//! Reports, re-rendering, compare and merge, through the real binary against
//! a local counting server. The HTML report is opened in headless Chromium.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;
use axum::http::Method;

const LIMIT: Duration = Duration::from_secs(60);

/// Two steps, Seq in every POST body and the run id in a header, so the
/// server can tell shards apart; `rules` are the thresholds.
fn scenario(base: &str, name: &str, rules: &str) -> String {
    format!(
        r#"
name = "{name}"
[target]
base_url = "{base}/{{stage}}"
stage = "test"

[[stages]]
name = "test"
table_prefix = "test-"

[load]
rate = 20
duration = "3s"

[headers]
X-Team = "platform"

[[steps]]
name = "create_user"
method = "POST"
path = "/user"
body = {{ Id = "{{{{uuid}}}}", Seq = "{{{{seq}}}}" }}
checks = [{{ status = [201] }}]
capture = {{ user_id = {{ json = "Id" }} }}

[[steps]]
name = "get_user"
method = "GET"
path = "/user/{{{{user_id}}}}"
checks = [{{ status = [200] }}]

[thresholds]
rules = [{rules}]
"#
    )
}

/// A run whose p99 cannot be under 1 µs: the verdict is FAIL by that rule only.
const FAILING_RULES: &str = r#""p99 < 0.001ms", "error_rate < 1%""#;
const PASSING_RULES: &str = r#""error_rate < 1%""#;

fn run(file: &Path, extra: &[&str]) -> std::process::Output {
    run_bounded(stagecheck().arg("run").arg(file).args(extra), LIMIT)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("which").arg(name).output()
            && out.status.success()
        {
            return PathBuf::from(text(&out.stdout).trim());
        }
    }
    panic!(
        "chromium is not installed: the HTML report is checked in headless Chromium. Run scripts/test (it installs it), or: apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium"
    );
}

/// The page's DOM after Chromium parsed and laid it out.
fn dump_dom(html: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = run_bounded(
        Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("--dump-dom")
            .arg(format!("file://{}", html.display())),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "chromium failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Every `<polyline …>` tag in `dom` with its attributes.
fn polylines(dom: &str) -> Vec<BTreeMap<String, String>> {
    dom.match_indices("<polyline ")
        .map(|(at, _)| {
            let tag = &dom[at..at + dom[at..].find('>').unwrap()];
            let mut attrs = BTreeMap::new();
            let mut rest = tag;
            while let Some(eq) = rest.find("=\"") {
                let name = rest[..eq].rsplit(' ').next().unwrap().to_string();
                let value_end = rest[eq + 2..].find('"').unwrap();
                attrs.insert(name, rest[eq + 2..eq + 2 + value_end].to_string());
                rest = &rest[eq + 2 + value_end + 1..];
            }
            attrs
        })
        .collect()
}

/// Polylines of one chart: the DOM between its `<svg data-chart=…>` and `</svg>`.
fn chart<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!("data-chart=\"{name}\""))
        .unwrap_or_else(|| panic!("no chart {name}"));
    let end = start + dom[start..].find("</svg>").unwrap();
    &dom[start..end]
}

#[test]
fn html_report_renders_in_chromium_with_charts_and_the_verdict() {
    let browser = chromium();
    assert!(browser.exists());
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(
        dir.path(),
        "s.toml",
        &scenario(&server.url(), "crud <i>injected</i>", FAILING_RULES),
    );
    let (html, json) = (dir.path().join("r.html"), dir.path().join("s.json"));
    let out = run(
        &file,
        &["--html", path_str(&html), "--out", path_str(&json), "-q"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let summary = read_json(&json);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        !page.contains("http://") || !page.contains("src=\"http"),
        "nothing is loaded from the network"
    );
    for banned in ["<script", "<link", "@import", "src=\"http"] {
        assert!(!page.contains(banned), "the page has {banned}");
    }

    let dom = dump_dom(&html);
    assert!(
        dom.contains("id=\"verdict\">FAIL<"),
        "verdict in the DOM: {}",
        &dom[..dom.len().min(2000)]
    );
    // The failed threshold comes first, before the tables.
    let failure = dom
        .find("p99 &lt; 0.001ms")
        .expect("failed threshold shown");
    assert!(failure < dom.find("id=\"steps\"").unwrap());
    assert!(dom.contains("class=\"failed-threshold\""));
    // User text is text, not markup.
    assert!(dom.contains("crud &lt;i&gt;injected&lt;/i&gt;"));
    assert!(!dom.contains("<i>injected</i>"));
    for step in ["create_user", "get_user"] {
        assert!(dom.contains(&format!("data-step=\"{step}\"")), "{step}");
    }

    // Percentile distribution: one line per step and one for all, 81 points each.
    let lines = polylines(chart(&dom, "percentiles"));
    let names: Vec<&str> = lines.iter().map(|l| l["data-series"].as_str()).collect();
    assert_eq!(names, ["all", "create_user", "get_user"]);
    for line in &lines {
        assert_eq!(line["data-points"], "81");
        assert_eq!(line["points"].split(' ').count(), 81);
    }

    // Over time: one point per second of the timeline.
    let seconds = summary["timeline"].as_array().unwrap().len();
    assert!(seconds >= 3, "{seconds} seconds");
    for (chart_name, series) in [
        ("latency-over-time", ["p50", "p99"]),
        ("rate-over-time", ["requests/s", "errors/s"]),
    ] {
        let lines = polylines(chart(&dom, chart_name));
        let names: Vec<&str> = lines.iter().map(|l| l["data-series"].as_str()).collect();
        assert_eq!(names, series);
        for line in &lines {
            assert_eq!(line["points"].split(' ').count(), seconds, "{chart_name}");
        }
    }
    // Status codes as the server answered them.
    assert!(dom.contains(&format!(
        "data-status=\"201\">{}<",
        server.count(&Method::POST)
    )));
    assert!(dom.contains("id=\"checks\""));
}

#[derive(Debug)]
struct JunitCase {
    suite: String,
    name: String,
    failure: Option<String>,
}

fn parse_junit(xml: &str) -> (BTreeMap<String, String>, Vec<JunitCase>) {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let attrs = |e: &quick_xml::events::BytesStart| -> BTreeMap<String, String> {
        e.attributes()
            .map(|a| {
                let a = a.unwrap();
                (
                    a.key.as_ref().to_string(),
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .unwrap()
                        .into_owned(),
                )
            })
            .collect()
    };
    let (mut root, mut cases, mut suite) = (BTreeMap::new(), Vec::new(), String::new());
    let mut depth_names: Vec<String> = Vec::new();
    loop {
        match reader.read_event().expect("well-formed XML") {
            event @ (Event::Start(_) | Event::Empty(_)) => {
                let (Event::Start(e) | Event::Empty(e)) = &event else {
                    unreachable!()
                };
                let name = e.name().as_ref().to_string();
                let a = attrs(e);
                match name.as_str() {
                    "testsuites" => {
                        assert!(depth_names.is_empty());
                        root = a;
                    }
                    "testsuite" => {
                        assert_eq!(depth_names, ["testsuites"]);
                        suite = a["name"].clone();
                    }
                    "testcase" => {
                        assert_eq!(depth_names, ["testsuites", "testsuite"]);
                        cases.push(JunitCase {
                            suite: suite.clone(),
                            name: a["name"].clone(),
                            failure: None,
                        });
                    }
                    "failure" => {
                        assert_eq!(depth_names.last().map(String::as_str), Some("testcase"));
                        cases.last_mut().unwrap().failure = Some(a["message"].clone());
                    }
                    _ => {}
                }
                if matches!(event, Event::Start(_)) {
                    depth_names.push(name);
                }
            }
            Event::End(_) => {
                depth_names.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    (root, cases)
}

#[test]
fn junit_markdown_and_step_summary_from_run_equal_report_rerendering() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(
        dir.path(),
        "s.toml",
        &scenario(&server.url(), "crud", FAILING_RULES),
    );
    let p = |name: &str| dir.path().join(name);
    let step_summary = p("step_summary.md");
    std::fs::write(&step_summary, "earlier step\n").unwrap();
    let out = run_bounded(
        stagecheck()
            .env("GITHUB_STEP_SUMMARY", &step_summary)
            .arg("run")
            .arg(&file)
            .args(["--out", path_str(&p("s.json"))])
            .args(["--junit", path_str(&p("run.xml"))])
            .args(["--markdown", path_str(&p("run.md"))])
            .args(["--html", path_str(&p("run.html"))]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    // JUnit: suites for the run, checks and thresholds; the failed rule is a failure.
    let xml = std::fs::read_to_string(p("run.xml")).unwrap();
    let (root, cases) = parse_junit(&xml);
    assert_eq!(root["tests"], cases.len().to_string());
    assert_eq!(root["failures"], "1");
    let failed: Vec<&JunitCase> = cases.iter().filter(|c| c.failure.is_some()).collect();
    assert_eq!(failed.len(), 1, "{cases:?}");
    assert_eq!(failed[0].suite, "crud.thresholds");
    assert_eq!(failed[0].name, "p99 < 0.001ms");
    assert!(
        failed[0]
            .failure
            .as_deref()
            .unwrap()
            .contains("p99 < 0.001ms"),
        "{:?}",
        failed[0]
    );
    let names: HashSet<(&str, &str)> = cases
        .iter()
        .map(|c| (c.suite.as_str(), c.name.as_str()))
        .collect();
    for expected in [
        ("crud.run", "run completed on stage test"),
        ("crud.checks", "status in [201]"),
        ("crud.checks", "status in [200]"),
        ("crud.thresholds", "error_rate < 1%"),
    ] {
        assert!(names.contains(&expected), "{expected:?} in {names:?}");
    }

    // Markdown: the verdict, the failed rule, the step table.
    let md = std::fs::read_to_string(p("run.md")).unwrap();
    assert!(
        md.starts_with("### ❌ FAIL: stagecheck crud on stage test"),
        "{md}"
    );
    assert!(
        md.contains("**Failed thresholds**\n\n- p99 &lt; 0.001ms (actual "),
        "{md}"
    );
    assert!(md.contains("| POST create\\_user | "), "{md}");
    assert!(md.contains("| GET get\\_user | "), "{md}");
    // …and appended to GitHub's step summary, after what was there.
    assert_eq!(
        std::fs::read_to_string(&step_summary).unwrap(),
        format!("earlier step\n{md}\n")
    );

    // `report` renders the saved summary to the same bytes, and exits as the run did.
    let again = run_bounded(
        stagecheck()
            .arg("report")
            .arg(p("s.json"))
            .args(["--junit", path_str(&p("again.xml"))])
            .args(["--markdown", path_str(&p("again.md"))])
            .args(["--html", path_str(&p("again.html"))]),
        LIMIT,
    );
    assert_eq!(again.status.code(), Some(1), "{}", text(&again.stderr));
    for (a, b) in [
        ("run.xml", "again.xml"),
        ("run.md", "again.md"),
        ("run.html", "again.html"),
    ] {
        assert_eq!(
            std::fs::read(p(a)).unwrap(),
            std::fs::read(p(b)).unwrap(),
            "{a} vs {b}"
        );
    }
    // The terminal report goes to stdout: the same as the run printed.
    assert_eq!(text(&again.stdout), text(&out.stdout));
    assert!(text(&again.stdout).contains("FAIL"));

    // --quiet prints nothing; a report to stdout is exactly the file's bytes.
    let md_out = run_bounded(
        stagecheck()
            .arg("report")
            .arg(p("s.json"))
            .args(["--markdown", "-", "-q"]),
        LIMIT,
    );
    assert_eq!(text(&md_out.stdout), md);
    assert_eq!(text(&md_out.stderr), "");
    // Two outputs cannot share stdout.
    let both = run_bounded(
        stagecheck()
            .arg("report")
            .arg(p("s.json"))
            .args(["--markdown", "-", "--junit", "-"]),
        LIMIT,
    );
    assert_eq!(both.status.code(), Some(2));
    assert!(text(&both.stderr).contains("only one output can go to stdout"));
    // Not a summary: exit 2 with a sentence.
    let bad = run_bounded(stagecheck().arg("report").arg(&file), LIMIT);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("not a stagecheck summary"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn shards_merge_into_what_the_server_saw() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(
        dir.path(),
        "s.toml",
        &scenario(&server.url(), "crud", PASSING_RULES),
    );
    let p = |name: &str| dir.path().join(name);
    // Both shards at once, as two machines would run them, given one start.
    let start_at = humantime::format_rfc3339_millis(
        std::time::SystemTime::now() + std::time::Duration::from_secs(2),
    )
    .to_string();
    let shard = |i: u32| {
        let out = p(&format!("shard{i}.json"));
        let mut cmd = stagecheck();
        cmd.arg("run").arg(&file).args([
            "--shard",
            &format!("{i}/2"),
            "--start-at",
            &start_at,
            "--out",
            path_str(&out),
            "-q",
        ]);
        std::thread::spawn(move || run_bounded(&mut cmd, LIMIT))
    };
    let (a, b) = (shard(1), shard(2));
    for out in [a.join().unwrap(), b.join().unwrap()] {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let merged_path = p("merged.json");
    let out = run_bounded(
        stagecheck()
            .arg("merge")
            .arg(p("shard1.json"))
            .arg(p("shard2.json"))
            .args(["--out", path_str(&merged_path)]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("PASS"));
    // Held until one time, the shards started together.
    let skew = read_json(&merged_path)["start_skew_s"].as_f64().unwrap();
    assert!(skew < 0.2, "shards started {skew} s apart");
    assert!(text(&out.stdout).contains("merged from 2 shards, started 0.0"));

    let (s1, s2, merged) = (
        read_json(&p("shard1.json")),
        read_json(&p("shard2.json")),
        read_json(&merged_path),
    );
    let posts = server.count(&Method::POST) as u64;
    let gets = server.count(&Method::GET) as u64;
    assert!(posts >= 50, "two shards at 10/s each for 3 s: {posts}");
    assert_eq!(merged["totals"]["requests"], posts + gets);
    assert_eq!(merged["steps"][0]["requests"], posts);
    assert_eq!(merged["steps"][0]["status"]["201"], posts);
    assert_eq!(merged["steps"][1]["requests"], gets);
    assert_eq!(
        merged["checks"]["passed"],
        s1["checks"]["passed"].as_u64().unwrap() + s2["checks"]["passed"].as_u64().unwrap()
    );
    assert_eq!(
        merged["totals"]["iterations"],
        s1["totals"]["iterations"].as_u64().unwrap() + s2["totals"]["iterations"].as_u64().unwrap()
    );
    assert_eq!(merged["merged_from"].as_array().unwrap().len(), 2);
    assert_eq!(merged["partial"], false);
    assert_eq!(merged["thresholds"][0]["expr"], "error_rate < 1%");
    assert_eq!(merged["thresholds"][0]["ok"], true);
    assert!(merged.get("shard").is_none());
    let timeline_requests: u64 = merged["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(timeline_requests, posts + gets);

    // Histograms added, not averaged: the merged count is the sum of the shards'.
    let count = |v: &serde_json::Value| {
        stagecheck::metrics::decode_histogram(v.as_str().unwrap())
            .unwrap()
            .len()
    };
    assert_eq!(
        count(&merged["totals"]["histogram"]),
        count(&s1["totals"]["histogram"]) + count(&s2["totals"]["histogram"])
    );
    assert_eq!(count(&merged["totals"]["histogram"]), posts + gets);
    assert_eq!(count(&merged["steps"][1]["histogram"]), gets);

    // The shards used disjoint seq spaces: the run id in each request says whose it was.
    let mut seqs: BTreeMap<String, HashSet<u64>> = BTreeMap::new();
    for post in server.seen().iter().filter(|s| s.method == Method::POST) {
        let correlation = post.headers["x-correlation-id"].to_str().unwrap();
        // Run ids have no `-`: the first one ends it.
        let run_id = correlation.split_once('-').unwrap().0.to_string();
        let body: serde_json::Value = serde_json::from_slice(&post.body).unwrap();
        assert!(
            seqs.entry(run_id)
                .or_default()
                .insert(body["Seq"].as_u64().unwrap())
        );
    }
    assert_eq!(seqs.len(), 2, "{:?}", seqs.keys());
    let sets: Vec<&HashSet<u64>> = seqs.values().collect();
    assert!(sets[0].is_disjoint(sets[1]));
    assert_eq!(sets[0].len() + sets[1].len(), posts as usize);
    assert!(seqs.contains_key(s1["run_id"].as_str().unwrap()));
    assert!(seqs.contains_key(s2["run_id"].as_str().unwrap()));

    // A summary of another scenario is refused with exit 2.
    let mut other = s2.clone();
    other["scenario"] = "other".into();
    std::fs::write(p("other.json"), other.to_string()).unwrap();
    let refused = run_bounded(
        stagecheck()
            .arg("merge")
            .arg(p("shard1.json"))
            .arg(p("other.json"))
            .args(["--out", path_str(&p("nope.json"))]),
        LIMIT,
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("not shards of one run: scenario"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!p("nope.json").exists());
}

#[test]
fn compare_passes_an_equal_candidate_and_fails_a_slower_one() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let summary_against = |server: &TestServer, out: &Path| {
        let file = scenario_file(
            dir.path(),
            "s.toml",
            &scenario(&server.url(), "crud", PASSING_RULES),
        );
        let run = run(&file, &["--out", path_str(out), "-q"]);
        assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    };
    summary_against(&TestServer::start(), &p("base.json"));
    summary_against(
        &TestServer::with_delay(Duration::from_millis(40)),
        &p("slow.json"),
    );
    let compare = |base: &str, cand: &str, extra: &[&str]| {
        run_bounded(
            stagecheck()
                .arg("compare")
                .arg(p(base))
                .arg(p(cand))
                .args(extra),
            LIMIT,
        )
    };

    let same = compare("base.json", "base.json", &[]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stdout));
    let table = text(&same.stdout);
    assert!(
        table.contains("PASS: no regression beyond p50=20%,p99=10%,error_rate=0.1%"),
        "{table}"
    );
    for row in ["create_user", "get_user", "requests", "p99", "error rate"] {
        assert!(table.contains(row), "{row} in {table}");
    }

    let slower = compare("base.json", "slow.json", &[]);
    assert_eq!(slower.status.code(), Some(1), "{}", text(&slower.stdout));
    let table = text(&slower.stdout);
    assert!(table.contains("REGRESSION"), "{table}");
    assert!(table.contains("regression: all p99: "), "{table}");
    assert!(table.contains("FAIL: "), "{table}");

    // Faster is never a regression; a generous bound lets the slower one pass.
    let faster = compare("slow.json", "base.json", &[]);
    assert_eq!(faster.status.code(), Some(0), "{}", text(&faster.stdout));
    let generous = compare(
        "base.json",
        "slow.json",
        &["--max-regression", "p99=100000%"],
    );
    assert_eq!(
        generous.status.code(),
        Some(0),
        "{}",
        text(&generous.stdout)
    );

    for bad in ["p99=10", "p98=10%", "p99"] {
        let out = compare("base.json", "slow.json", &["--max-regression", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            text(&out.stderr).contains("--max-regression"),
            "{}",
            text(&out.stderr)
        );
    }
    let missing = compare("base.json", "nope.json", &[]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("cannot read"));
}

#[test]
fn progress_is_a_bar_on_a_terminal_lines_on_a_pipe_and_nothing_when_quiet() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = scenario_file(
        dir.path(),
        "s.toml",
        &scenario(&server.url(), "crud", PASSING_RULES),
    );

    let piped = run(&file, &[]);
    assert_eq!(piped.status.code(), Some(0), "{}", text(&piped.stderr));
    let lines: Vec<String> = text(&piped.stderr)
        .lines()
        .filter(|l| l.contains("req/s"))
        .map(str::to_string)
        .collect();
    assert!(lines.len() >= 2, "{}", text(&piped.stderr));
    assert!(
        !text(&piped.stderr).contains('\u{1b}'),
        "no escapes on a pipe"
    );

    let quiet = run(&file, &["--quiet"]);
    assert_eq!(quiet.status.code(), Some(0));
    assert_eq!(text(&quiet.stderr), "");
    assert_eq!(text(&quiet.stdout), "");

    // A terminal (a pty from util-linux `script`) gets the live bar.
    let command = format!(
        "{} run {} --rate 20 --duration 3s",
        bin().display(),
        file.display()
    );
    let tty = run_bounded(
        Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("NO_COLOR", "1")
            .env("TERM", "xterm")
            .env("COLUMNS", "160"),
        LIMIT,
    );
    assert_eq!(tty.status.code(), Some(0), "{}", text(&tty.stdout));
    let screen = text(&tty.stdout);
    assert!(
        screen.contains("/3s"),
        "elapsed/total on the bar: {screen:?}"
    );
    assert!(screen.contains("req/s  p99 "), "{screen:?}");
    assert!(screen.contains("dropped 0"), "{screen:?}");
    assert!(screen.contains("PASS"), "the report follows: {screen:?}");
}
