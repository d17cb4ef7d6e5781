//! The second proof of routing: API Gateway's execution log. Each recorded
//! request is followed from the `x-amzn-RequestId` its client got, through
//! the stage's execution-log lines with that id, to the function ARN API
//! Gateway invoked (`Endpoint request URI`) and Lambda's request id (`AWS
//! Integration Endpoint RequestId`), and on to that id's `REPORT` in the
//! function's own log group. It proves routing for functions that log
//! nothing of the client's (Lambda's JSON format carries only Lambda's id).
//!
//! This module only judges lines; reading them (pages, pacing, the window)
//! is the verifier's. Only the requests asked about are kept, so memory
//! follows the recorded requests, not the stage's traffic.

use std::collections::{HashMap, HashSet};

use hdrhistogram::Histogram;

use super::lines::{Execution, Report, parse_execution, parse_report};
use crate::metrics::new_histogram;
use crate::summary::ColdTail;

/// Server-side terms for the lines the chain reads, as one OR pattern. Only a
/// volume cut: emulators ignore `?` and return every event, and each line is
/// judged here anyway.
pub const EXECUTION_PATTERN: &str = "?\"Endpoint request URI\" ?\"AWS Integration Endpoint RequestId\" ?\"Method completed with status\" ?\"Execution failed due to configuration error\"";

/// The terms of Lambda's report lines, text (`REPORT RequestId`) and JSON
/// (`platform.report`).
pub const REPORT_TERMS: &str = "?\"REPORT RequestId\" ?\"platform.report\"";

/// The stage's execution-log group.
pub fn execution_group(rest_api: &str, stage: &str) -> String {
    format!("API-Gateway-Execution-Logs_{rest_api}/{stage}")
}

pub const EXECUTION_GROUP_PREFIX: &str = "API-Gateway-Execution-Logs_";

/// Of the execution-log groups listed, those of a stage named `stage`
/// (`API-Gateway-Execution-Logs_{api}/{stage}`, not a canary's `…/Canary`),
/// with their API ids.
pub fn groups_of_stage<'a>(names: &'a [String], stage: &str) -> Vec<(&'a str, &'a str)> {
    names
        .iter()
        .filter_map(|name| {
            let rest = name.strip_prefix(EXECUTION_GROUP_PREFIX)?;
            let (api, s) = rest.split_once('/')?;
            (s == stage && !api.is_empty()).then_some((name.as_str(), api))
        })
        .collect()
}

/// The function's name in a Lambda ARN (`arn:aws:lambda:{region}:{account}:function:{name}[:{qualifier}]`)
/// or partial ARN, or the name itself.
pub fn function_name(arn_or_name: &str) -> &str {
    let name = match arn_or_name.split_once(":function:") {
        Some((_, after)) => after,
        None => arn_or_name,
    };
    name.split(':').next().unwrap_or(name)
}

/// What one request's execution-log lines said about its routing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chain {
    /// The function ARN of `Endpoint request URI`, and that line as evidence.
    pub invoked: Option<(String, String)>,
    /// Lambda's request id, the one its `REPORT` carries.
    pub lambda_request_id: Option<String>,
    /// `Method completed with status`.
    pub status: Option<u16>,
    pub integration_latency_ms: Option<f64>,
    pub configuration_error: Option<String>,
    pub lines: u32,
}

/// The chains of the requests asked about, built from one pass over a
/// group's lines (in any order, with any other requests' lines among them).
#[derive(Debug)]
pub struct Chains<'a> {
    wanted: &'a HashSet<String>,
    chains: HashMap<String, Chain>,
}

impl<'a> Chains<'a> {
    pub fn new(wanted: &'a HashSet<String>) -> Chains<'a> {
        Chains {
            wanted,
            chains: HashMap::new(),
        }
    }

    pub fn visit(&mut self, message: &str) {
        let Some((request_id, event)) = parse_execution(message) else {
            return;
        };
        if !self.wanted.contains(&request_id) {
            return;
        }
        let chain = self.chains.entry(request_id).or_default();
        chain.lines += 1;
        match event {
            Execution::Invoked { function_arn } => {
                chain.invoked = Some((function_arn, message.to_string()));
            }
            Execution::IntegrationRequestId(id) => chain.lambda_request_id = Some(id),
            Execution::Completed { status } => chain.status = Some(status),
            Execution::Received {
                integration_latency_ms,
                ..
            } => chain.integration_latency_ms = Some(integration_latency_ms),
            Execution::ConfigurationError(e) => chain.configuration_error = Some(e),
            _ => {}
        }
    }

    pub fn get(&self, request_id: &str) -> Option<&Chain> {
        self.chains.get(request_id)
    }

    /// Requests with at least one line.
    pub fn len(&self) -> usize {
        self.chains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chains.is_empty()
    }

    /// Lambda's request ids of the requests that invoked `own_function`:
    /// the `REPORT`s to look for in its log group.
    pub fn lambda_ids_of(&self, own_function: &str) -> HashSet<String> {
        self.chains
            .values()
            .filter(|c| {
                c.invoked
                    .as_ref()
                    .is_some_and(|(arn, _)| function_name(arn) == function_name(own_function))
            })
            .filter_map(|c| c.lambda_request_id.clone())
            .collect()
    }
}

/// Collects the `REPORT`s (text or JSON) of the Lambda request ids asked about.
pub fn visit_report(message: &str, wanted: &HashSet<String>, found: &mut HashMap<String, Report>) {
    // Cheap test first: most lines of a function's group are not reports.
    if !(message.contains("REPORT RequestId") || message.contains("platform.report")) {
        return;
    }
    if let Some(report) = parse_report(message)
        && wanted.contains(&report.request_id)
    {
        found.insert(report.request_id.clone(), report);
    }
}

/// Where one step's time went, over the requests followed to their
/// `REPORT`: the client's service time, API Gateway's `Integration latency`,
/// the difference (API Gateway's own part, with the network), and the
/// function's `Duration`. HDR histograms of µs, so shards merge exactly.
pub struct TimeSplit {
    pub client_us: Histogram<u64>,
    pub integration_us: Histogram<u64>,
    pub api_gateway_us: Histogram<u64>,
    pub function_us: Histogram<u64>,
    /// `Init Duration` of the requests that were cold starts.
    pub init_us: Histogram<u64>,
    /// Requests whose integration latency exceeded the client's time (clocks
    /// disagree by up to a millisecond: API Gateway logs whole ms): their
    /// API Gateway part is counted as 0.
    pub clamped: u64,
    /// Each request's client time and whether it was a cold start, for the
    /// tail: as many as the run recorded (the reservoir bounds them).
    requests: Vec<(u64, bool)>,
    /// Cold starts among the warmup's requests, which the figures leave out.
    pub warmup_cold_starts: u64,
}

impl Default for TimeSplit {
    fn default() -> Self {
        TimeSplit {
            client_us: new_histogram(),
            integration_us: new_histogram(),
            api_gateway_us: new_histogram(),
            function_us: new_histogram(),
            init_us: new_histogram(),
            clamped: 0,
            requests: Vec::new(),
            warmup_cold_starts: 0,
        }
    }
}

impl TimeSplit {
    /// One request: its service time at the client, API Gateway's
    /// integration latency, and its `REPORT`'s `Duration` and `Init Duration`
    /// (a cold start).
    pub fn record(
        &mut self,
        service_us: u64,
        integration_ms: Option<f64>,
        function_ms: f64,
        init_ms: Option<f64>,
    ) {
        let us = |ms: f64| (ms.max(0.0) * 1000.0).round() as u64;
        // `record`, not `saturating_record`: these histograms grow to fit,
        // and a saturating record would clamp to their initial range.
        let record = |h: &mut Histogram<u64>, v: u64| {
            let _ = h.record(v);
        };
        record(&mut self.client_us, service_us);
        if let Some(ms) = integration_ms {
            let integration = us(ms);
            record(&mut self.integration_us, integration);
            match service_us.checked_sub(integration) {
                Some(own) => record(&mut self.api_gateway_us, own),
                None => {
                    self.clamped += 1;
                    record(&mut self.api_gateway_us, 0);
                }
            }
        }
        if function_ms.is_finite() {
            record(&mut self.function_us, us(function_ms));
        }
        let init = init_ms.filter(|i| i.is_finite());
        if let Some(init) = init {
            record(&mut self.init_us, us(init));
        }
        self.requests.push((service_us, init.is_some()));
    }

    /// A warmup request: only whether it was a cold start is kept.
    pub fn record_warmup(&mut self, init_ms: Option<f64>) {
        self.warmup_cold_starts += u64::from(init_ms.is_some_and(f64::is_finite));
    }

    /// The slowest 1 % of the requests (at least one) and how many of them
    /// were cold starts; `None` before any request.
    pub fn tail(&self) -> Option<ColdTail> {
        if self.requests.is_empty() {
            return None;
        }
        let n = self.requests.len().div_ceil(100);
        let mut by_time: Vec<(u64, bool)> = self.requests.clone();
        by_time.sort_unstable_by_key(|&(us, _)| std::cmp::Reverse(us));
        let slowest = &by_time[..n];
        Some(ColdTail {
            slowest: n as u64,
            cold_starts: slowest.iter().filter(|(_, cold)| *cold).count() as u64,
            from_ms: slowest.last().map_or(0.0, |(us, _)| *us as f64 / 1000.0),
        })
    }
}

/// Where one request went, as its execution-log chain says.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed<'a> {
    /// The stage's own function was invoked and its log has the invocation's `REPORT`.
    Proven,
    /// No line for the request (logging off, or not ingested yet).
    NoLines,
    /// Lines, but a link of the chain is missing (not ingested yet, or cut).
    Incomplete(String),
    /// API Gateway could not invoke anything (a broken route or permission).
    ConfigurationError(&'a str),
    /// Another function than the stage's own was invoked: `stage` names the
    /// stage whose function it is (an isolation leak), when one does.
    OtherFunction {
        arn: &'a str,
        line: &'a str,
        stage: Option<&'a str>,
    },
}

impl Routed<'_> {
    /// More polling cannot change the verdict.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Routed::Proven | Routed::ConfigurationError(_) | Routed::OtherFunction { .. }
        )
    }
}

/// Judges one request's chain. `others` are (stage, function) of the other
/// stages; `reports` the Lambda request ids whose `REPORT` the stage's own
/// function group holds.
pub fn judge<'a, R>(
    chain: Option<&'a Chain>,
    own_function: &str,
    others: &'a [(String, String)],
    reports: &HashMap<String, R>,
) -> Routed<'a> {
    let Some(chain) = chain else {
        return Routed::NoLines;
    };
    let own = function_name(own_function);
    if let Some((arn, line)) = &chain.invoked {
        let name = function_name(arn);
        if name != own {
            return Routed::OtherFunction {
                arn,
                line,
                stage: others
                    .iter()
                    .find(|(_, f)| function_name(f) == name)
                    .map(|(s, _)| s.as_str()),
            };
        }
    }
    if let Some(error) = &chain.configuration_error {
        return Routed::ConfigurationError(error);
    }
    if chain.invoked.is_none() {
        return Routed::Incomplete("no `Endpoint request URI` line".into());
    }
    match &chain.lambda_request_id {
        None => Routed::Incomplete("no `AWS Integration Endpoint RequestId` line".into()),
        Some(id) if !reports.contains_key(id) => Routed::Incomplete(format!(
            "no REPORT for Lambda request id {id} in the function's log group"
        )),
        Some(_) => Routed::Proven,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OWN: &str = "test-user-service";

    fn lines(request: &str, function: &str, lambda: &str) -> Vec<String> {
        vec![
            format!("({request}) Extended Request Id: Xyz="),
            format!("({request}) Starting execution for request: {request}"),
            format!("({request}) HTTP Method: POST, Resource Path: /user"),
            format!(
                "({request}) Endpoint request URI: https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:{function}/invocations"
            ),
            format!(
                "({request}) Endpoint request headers: {{x-amzn-lambda-integration-tag={request}, X-Amz-Security-Token=IQoJb3JpZ2lu [TRUNCATED]"
            ),
            format!("({request}) Received response. Status: 200, Integration latency: 41 ms"),
            format!("({request}) Method completed with status: 201"),
            format!("({request}) AWS Integration Endpoint RequestId : {lambda}"),
        ]
    }

    fn report(lambda: &str) -> String {
        format!(
            "REPORT RequestId: {lambda}\tDuration: 3.10 ms\tBilled Duration: 4 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\t"
        )
    }

    fn no_reports() -> HashMap<String, ()> {
        HashMap::new()
    }

    fn others() -> Vec<(String, String)> {
        vec![("prod".to_string(), "user-service".to_string())]
    }

    /// Follows the chain of every wanted request over `exec` and `function`
    /// lines, as the verifier does.
    fn follow(
        wanted: &HashSet<String>,
        exec: &[String],
        function: &[String],
    ) -> HashMap<String, Routed<'static>> {
        let mut chains = Chains::new(wanted);
        exec.iter().for_each(|l| chains.visit(l));
        let lambda_ids = chains.lambda_ids_of(OWN);
        let mut reports = HashMap::new();
        function
            .iter()
            .for_each(|l| visit_report(l, &lambda_ids, &mut reports));
        let others = others();
        wanted
            .iter()
            .map(|id| {
                let verdict = match judge(chains.get(id), OWN, &others, &reports) {
                    Routed::OtherFunction { stage, .. } => Routed::OtherFunction {
                        arn: "",
                        line: "",
                        stage: stage.map(|_| "prod"),
                    },
                    Routed::ConfigurationError(_) => Routed::ConfigurationError(""),
                    Routed::Proven => Routed::Proven,
                    Routed::NoLines => Routed::NoLines,
                    Routed::Incomplete(why) => Routed::Incomplete(why),
                };
                (id.clone(), verdict)
            })
            .collect()
    }

    #[test]
    fn a_whole_chain_to_the_own_functions_report_is_proof() {
        let wanted: HashSet<String> = ["r-1".to_string()].into();
        let exec = lines("r-1", OWN, "l-1");
        let verdicts = follow(&wanted, &exec, &[report("l-1")]);
        assert_eq!(verdicts["r-1"], Routed::Proven);
        // The same chain without its REPORT proves nothing yet.
        let verdicts = follow(&wanted, &exec, &[report("l-2")]);
        assert!(
            matches!(&verdicts["r-1"], Routed::Incomplete(why) if why.contains("l-1")),
            "{verdicts:?}"
        );
        // Nor does a JSON-format report of another id; its own id does.
        let json = |id: &str| {
            format!(
                r#"{{"time":"2026-12-02T00:00:00.000Z","type":"platform.report","record":{{"requestId":"{id}","metrics":{{"durationMs":4.5}},"status":"success"}}}}"#
            )
        };
        assert_ne!(
            follow(&wanted, &exec, &[json("l-9")])["r-1"],
            Routed::Proven
        );
        assert_eq!(
            follow(&wanted, &exec, &[json("l-1")])["r-1"],
            Routed::Proven
        );
    }

    #[test]
    fn another_stages_function_is_a_leak_with_its_line() {
        let wanted: HashSet<String> = ["r-1".to_string()].into();
        let exec = lines("r-1", "user-service", "l-1");
        let mut chains = Chains::new(&wanted);
        exec.iter().for_each(|l| chains.visit(l));
        // Its REPORT is in the other function's group, never asked for.
        assert!(chains.lambda_ids_of(OWN).is_empty());
        let others = others();
        match judge(chains.get("r-1"), OWN, &others, &no_reports()) {
            Routed::OtherFunction { arn, line, stage } => {
                assert_eq!(
                    arn,
                    "arn:aws:lambda:us-east-1:123456789012:function:user-service"
                );
                assert!(line.starts_with("(r-1) Endpoint request URI: "), "{line}");
                assert!(line.contains(":function:user-service/invocations"));
                assert_eq!(stage, Some("prod"));
            }
            other => panic!("{other:?}"),
        }
        // A function no stage owns is still not the stage's own.
        let exec = lines("r-1", "someone-elses", "l-1");
        let mut chains = Chains::new(&wanted);
        exec.iter().for_each(|l| chains.visit(l));
        assert!(matches!(
            judge(chains.get("r-1"), OWN, &others, &no_reports()),
            Routed::OtherFunction { stage: None, .. }
        ));
    }

    #[test]
    fn configuration_errors_and_missing_links_are_not_proof() {
        let wanted: HashSet<String> = ["r-1".to_string(), "r-2".to_string()].into();
        let mut chains = Chains::new(&wanted);
        chains.visit("(r-1) Starting execution for request: r-1");
        chains.visit(
            "(r-1) Execution failed due to configuration error: Invalid permissions on Lambda function",
        );
        let others = others();
        let reports = no_reports();
        assert_eq!(
            judge(chains.get("r-1"), OWN, &others, &reports),
            Routed::ConfigurationError("Invalid permissions on Lambda function")
        );
        assert_eq!(
            judge(chains.get("r-2"), OWN, &others, &reports),
            Routed::NoLines
        );
        chains.visit("(r-2) HTTP Method: GET, Resource Path: /user/{id}");
        assert!(matches!(
            judge(chains.get("r-2"), OWN, &others, &reports),
            Routed::Incomplete(_)
        ));
        // A line of a request not asked about is not kept.
        chains.visit("(r-3) Starting execution for request: r-3");
        assert_eq!(chains.len(), 2);
        assert!(chains.get("r-3").is_none());
    }

    #[test]
    fn a_cut_uri_line_never_names_a_function() {
        // `test-user` is cut from `test-user-service`: had the cut ARN been
        // taken, the request would point at another function.
        let wanted: HashSet<String> = ["r-1".to_string()].into();
        let mut chains = Chains::new(&wanted);
        chains.visit("(r-1) Endpoint request URI: https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/arn:aws:lambda:us-east-1:1:function:test-user [TRUNCATED]");
        chains.visit("(r-1) AWS Integration Endpoint RequestId : l-1");
        let chain = chains.get("r-1").unwrap();
        assert_eq!(chain.invoked, None);
        assert!(matches!(
            judge(
                Some(chain),
                OWN,
                &others(),
                &HashMap::from([("l-1".to_string(), ())])
            ),
            Routed::Incomplete(_)
        ));
    }

    #[test]
    fn names_functions_in_arns_partial_arns_and_plain() {
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:user-service"),
            "user-service"
        );
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:user-service:live"),
            "user-service"
        );
        assert_eq!(
            function_name("123456789012:function:user-service"),
            "user-service"
        );
        assert_eq!(function_name("user-service"), "user-service");
    }

    #[test]
    fn finds_the_stages_group_among_the_listed() {
        let names: Vec<String> = [
            "API-Gateway-Execution-Logs_abc/test",
            "API-Gateway-Execution-Logs_abc/test/Canary",
            "API-Gateway-Execution-Logs_abc/prod",
            "API-Gateway-Execution-Logs_xyz/test",
            "API-Gateway-Execution-Logs_/test",
            "/aws/lambda/test",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            groups_of_stage(&names, "test"),
            vec![
                ("API-Gateway-Execution-Logs_abc/test", "abc"),
                ("API-Gateway-Execution-Logs_xyz/test", "xyz")
            ]
        );
        assert_eq!(groups_of_stage(&names, "prod").len(), 1);
        assert_eq!(execution_group("abc", "test"), names[0]);
    }

    #[test]
    fn splits_the_clients_time_at_the_integration() {
        let mut split = TimeSplit::default();
        for i in 0..100u64 {
            // 60 ms at the client, 50 in the integration, 48.5 in the function.
            split.record(60_000 + i, Some(50.0), 48.5, None);
        }
        // API Gateway logs whole ms: a little over the client's time is clamped.
        split.record(49_800, Some(50.0), 49.0, Some(812.5));
        let p50 = |h: &Histogram<u64>| h.value_at_quantile(0.5);
        assert!((10_000..10_100).contains(&p50(&split.api_gateway_us)));
        assert!((49_950..50_050).contains(&p50(&split.integration_us)));
        assert!((48_450..48_550).contains(&p50(&split.function_us)));
        assert_eq!(split.api_gateway_us.min(), 0);
        assert_eq!(split.clamped, 1);
        assert_eq!(split.init_us.len(), 1);
        assert!((812_000..813_000).contains(&split.init_us.max()));
        assert_eq!(split.client_us.len(), 101);
        // No integration latency logged: the client's time alone is kept.
        split.record(70_000, None, 1.0, None);
        assert_eq!(split.client_us.len(), 102);
        assert_eq!(split.integration_us.len(), 101);
    }

    #[test]
    fn the_tail_is_the_slowest_percent_and_its_cold_starts() {
        let mut split = TimeSplit::default();
        assert_eq!(split.tail(), None);
        // 396 warm requests of 5-9 ms, 4 cold ones of 600 ms and more.
        for i in 0..396u64 {
            split.record(5_000 + i * 10, Some(4.0), 3.0, None);
        }
        for i in 0..4u64 {
            split.record(600_000 + i, Some(590.0), 80.0, Some(500.0));
        }
        let tail = split.tail().unwrap();
        assert_eq!((tail.slowest, tail.cold_starts), (4, 4));
        assert!((tail.from_ms - 600.0).abs() < 0.01);
        // One more warm request, slower than them all: 5 slowest of 401.
        split.record(900_000, Some(890.0), 880.0, None);
        let tail = split.tail().unwrap();
        assert_eq!((tail.slowest, tail.cold_starts), (5, 4));
    }

    proptest! {
        /// Whatever the order of the lines, whatever other requests' lines
        /// are among them and whichever requests' lines are lost, a request
        /// is proven exactly when all its links arrived and it invoked the
        /// stage's own function; one that invoked another stage's is a leak.
        #[test]
        fn chains_are_judged_by_their_own_lines_alone(
            plan in proptest::collection::vec((any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()), 1..12),
            seed in any::<u64>(),
        ) {
            // Per request: invoked the own function?, URI line kept?, id line kept?, REPORT kept?
            let mut exec = Vec::new();
            let mut function = Vec::new();
            let mut wanted = HashSet::new();
            for (i, (own, uri, id, rep)) in plan.iter().enumerate() {
                let request = format!("req-{i}");
                let lambda = format!("lam-{i}");
                wanted.insert(request.clone());
                let all = lines(&request, if *own { OWN } else { "user-service" }, &lambda);
                for line in all {
                    let keep = (*uri || !line.contains("Endpoint request URI"))
                        && (*id || !line.contains("Integration Endpoint RequestId"));
                    if keep {
                        exec.push(line);
                    }
                }
                if *rep {
                    function.push(report(&lambda));
                }
                // Noise: a request nobody asked about, same Lambda id shape.
                exec.extend(lines(&format!("other-{i}"), "user-service", &format!("x-{i}")));
            }
            fastrand::Rng::with_seed(seed).shuffle(&mut exec);
            let verdicts = follow(&wanted, &exec, &function);
            for (i, (own, uri, id, rep)) in plan.iter().enumerate() {
                let verdict = &verdicts[&format!("req-{i}")];
                if *own {
                    prop_assert_eq!(verdict == &Routed::Proven, *uri && *id && *rep, "{:?}", verdict);
                } else if *uri {
                    prop_assert_eq!(verdict, &Routed::OtherFunction { arn: "", line: "", stage: Some("prod") });
                } else {
                    prop_assert_ne!(verdict, &Routed::Proven);
                }
            }
        }
    }
}
