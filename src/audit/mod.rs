//! `stagecheck audit`'s judgement of a [`Deployment`]: every link of each
//! stage's chain (stage variable → integration → function → its environment
//! → table; the execution role; the invoke permission; the deployment
//! served) checked on its own and across stages, as findings with a stable
//! code. The JSON document ([`Audit`]) is the source of every other format
//! ([`render`]).

pub mod render;

use std::collections::BTreeSet;

use crate::deployment::{Deployment, NEEDED_ACTIONS, StageView};
use crate::policy;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn word(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable: scripts and baselines key on it.
    pub code: String,
    pub stage: String,
    /// The ARN or name of what is wrong.
    pub resource: String,
    /// One sentence that names the fix.
    pub message: String,
    /// For decisions about a role's access: `SimulatePrincipalPolicy` or
    /// `stagecheck` (its own evaluator).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub decided_by: Option<String>,
}

/// Every code audit can report, in the order the reports list checks.
pub const CODES: [&str; 16] = [
    "unset-stage-variable",
    "function-not-found",
    "missing-invoke-permission",
    "source-arn-mismatch",
    "table-not-found",
    "role-denies-own-table",
    "role-allows-other-stage-table",
    "shared-function",
    "shared-table",
    "log-group-not-found",
    "execution-logging-off",
    "code-drift",
    "stale-deployment",
    "canary-active",
    "routes-from-draft",
    "conditions-not-evaluated",
];

/// The audit's document: what was read and what was found.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Audit {
    pub rest_api: crate::deployment::RestApi,
    pub region: String,
    pub stages: Vec<String>,
    /// `pass` or `fail` (an error finding).
    pub verdict: String,
    pub counts: Counts,
    pub findings: Vec<Finding>,
    pub deployment: Deployment,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub error: usize,
    pub warning: usize,
    pub info: usize,
}

impl Audit {
    pub fn of(deployment: Deployment) -> Audit {
        let mut findings = findings(&deployment);
        findings.sort_by(|a, b| {
            (&a.stage, a.severity, code_rank(&a.code), &a.resource).cmp(&(
                &b.stage,
                b.severity,
                code_rank(&b.code),
                &b.resource,
            ))
        });
        let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
        let counts = Counts {
            error: count(Severity::Error),
            warning: count(Severity::Warning),
            info: count(Severity::Info),
        };
        Audit {
            rest_api: deployment.rest_api.clone(),
            region: deployment.region.clone(),
            stages: deployment.stages.iter().map(|s| s.name.clone()).collect(),
            verdict: if counts.error > 0 { "fail" } else { "pass" }.into(),
            counts,
            findings,
            deployment,
        }
    }

    pub fn passed(&self) -> bool {
        self.counts.error == 0
    }

    pub fn for_stage<'a>(&'a self, stage: &'a str) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings.iter().filter(move |f| f.stage == stage)
    }
}

fn code_rank(code: &str) -> usize {
    CODES.iter().position(|c| *c == code).unwrap_or(CODES.len())
}

fn finding(
    severity: Severity,
    code: &str,
    stage: &str,
    resource: &str,
    message: String,
) -> Finding {
    Finding {
        severity,
        code: code.into(),
        stage: stage.into(),
        resource: resource.into(),
        message,
        decided_by: None,
    }
}

/// Every finding of the deployment.
pub fn findings(d: &Deployment) -> Vec<Finding> {
    let mut out = Vec::new();
    for stage in &d.stages {
        stage_findings(d, stage, &mut out);
    }
    shared(d, &mut out);
    drift(d, &mut out);
    out
}

fn stage_findings(d: &Deployment, stage: &StageView, out: &mut Vec<Finding>) {
    let s = stage.name.as_str();
    if let Some(c) = &stage.canary {
        out.push(finding(
            Severity::Warning,
            "canary-active",
            s,
            &format!("stage {s}"),
            format!(
                "Stage {s} sends {}% of its traffic to a canary of deployment {}: promote it or \
                 remove /canarySettings before judging the stage by its primary deployment.",
                crate::report::number(c.percent_traffic),
                c.deployment_id.as_deref().unwrap_or("(none)")
            ),
        ));
    }
    if !stage.logging.execution_logs() {
        out.push(finding(
            Severity::Warning,
            "execution-logging-off",
            s,
            &format!("stage {s}"),
            format!(
                "Stage {s} writes no execution logs (loggingLevel {}), so which function each \
                 request invoked cannot be proven from API Gateway's side: set loggingLevel INFO \
                 (UpdateStage op=replace,path=/*/*/logging/loglevel,value=INFO).",
                stage.logging.level
            ),
        ));
    }
    if let Some(first) = stage.draft_differs.first() {
        out.push(finding(
            Severity::Warning,
            "stale-deployment",
            s,
            &format!(
                "stage {s} deployment {}",
                stage.deployment_id.as_deref().unwrap_or("?")
            ),
            format!(
                "Stage {s} serves deployment {} while the draft has changed since ({first}{}): \
                 deploy the draft to the stage (CreateDeployment) or revert it, so that what is \
                 tested is what is defined.",
                stage.deployment_id.as_deref().unwrap_or("?"),
                if stage.draft_differs.len() > 1 {
                    format!("; {} more", stage.draft_differs.len() - 1)
                } else {
                    String::new()
                }
            ),
        ));
    }
    if stage.routes_from == "draft" {
        out.push(finding(
            Severity::Info,
            "routes-from-draft",
            s,
            &format!("stage {s}"),
            format!(
                "Stage {s}'s routes were read from the draft because its export carries no \
                 integrations: a change not yet deployed would go unseen (real API Gateway \
                 exports them)."
            ),
        ));
    }
    for route in &stage.routes {
        if !route.unset_variables.is_empty() {
            let names: Vec<String> = route
                .unset_variables
                .iter()
                .map(|v| format!("${{stageVariables.{v}}}"))
                .collect();
            out.push(finding(
                Severity::Error,
                "unset-stage-variable",
                s,
                &format!("stage {s} {}", route.route.label()),
                format!(
                    "Stage {s}'s integration for {} uses {}, which the stage does not set, so it \
                     resolves to {}: set {} on stage {s}.",
                    route.route.label(),
                    names.join(", "),
                    route
                        .function
                        .as_ref()
                        .map_or_else(|| "an unusable URI".to_string(), |f| f.name.clone()),
                    route.unset_variables.join(", ")
                ),
            ));
        }
    }
    let own_tables: BTreeSet<&str> = stage
        .function_arns()
        .iter()
        .filter_map(|arn| d.function(arn)?.table.as_deref())
        .collect();
    let other_tables: BTreeSet<&str> = d
        .stages
        .iter()
        .filter(|o| o.name != stage.name)
        .flat_map(|o| o.function_arns())
        .filter_map(|arn| d.function(arn)?.table.as_deref())
        .filter(|t| !own_tables.contains(t))
        .collect();
    for arn in stage.function_arns() {
        let Some(f) = d.function(arn) else { continue };
        if !f.found {
            out.push(finding(
                Severity::Error,
                "function-not-found",
                s,
                arn,
                format!(
                    "Stage {s}'s integration names function {}, which does not exist in {}: \
                     create it, or fix the integration URI or the stage variable that names it.",
                    f.name, d.region
                ),
            ));
            continue;
        }
        permission_findings(d, stage, f, out);
        if let Some(table) = &f.table {
            match d.table(table) {
                Some(t) if !t.exists => out.push(finding(
                    Severity::Error,
                    "table-not-found",
                    s,
                    &t.arn,
                    format!(
                        "Function {} leads to table {table} (rule {} with its environment {}), \
                         which does not exist: create the table or fix the function's \
                         environment.",
                        f.name,
                        d.table_rule,
                        f.environment_text()
                    ),
                )),
                _ => {}
            }
            if let Some(access) = f.access.iter().find(|a| &a.table == table) {
                let missing: Vec<&str> = NEEDED_ACTIONS
                    .iter()
                    .filter(|a| !access.allowed.iter().any(|x| x == *a))
                    .copied()
                    .collect();
                if !missing.is_empty() {
                    let mut fnd = finding(
                        Severity::Error,
                        "role-denies-own-table",
                        s,
                        f.role.as_deref().unwrap_or(&f.arn),
                        format!(
                            "Role {} of {} may not call {} on its own table {table}, so its \
                             writes fail with 502: allow them on {} in the role's policy.",
                            role_name(f.role.as_deref()),
                            f.name,
                            missing.join(", "),
                            access.table_arn
                        ),
                    );
                    fnd.decided_by = Some(access.decided_by.clone());
                    out.push(fnd);
                }
            }
        }
        for access in &f.access {
            if !other_tables.contains(access.table.as_str()) || access.allowed.is_empty() {
                continue;
            }
            let owners: Vec<&str> = d
                .stages
                .iter()
                .filter(|o| o.name != stage.name)
                .filter(|o| {
                    o.function_arns().iter().any(|a| {
                        d.function(a).and_then(|f| f.table.as_deref()) == Some(&access.table)
                    })
                })
                .map(|o| o.name.as_str())
                .collect();
            let mut fnd = finding(
                Severity::Error,
                "role-allows-other-stage-table",
                s,
                f.role.as_deref().unwrap_or(&f.arn),
                format!(
                    "Role {} of stage {s}'s function {} may call {} on {}'s table {}: nothing \
                     stops stage {s} from writing there; remove {} from the role's policy.",
                    role_name(f.role.as_deref()),
                    f.name,
                    access.allowed.join(", "),
                    owners.join(", "),
                    access.table,
                    access.table_arn
                ),
            );
            fnd.decided_by = Some(access.decided_by.clone());
            out.push(fnd);
        }
        if !f.access.iter().all(|a| a.unevaluated_conditions.is_empty()) {
            let statements: BTreeSet<&str> = f
                .access
                .iter()
                .flat_map(|a| a.unevaluated_conditions.iter().map(String::as_str))
                .collect();
            let mut fnd = finding(
                Severity::Info,
                "conditions-not-evaluated",
                s,
                f.role.as_deref().unwrap_or(&f.arn),
                format!(
                    "Role {}'s statements {} have conditions stagecheck does not evaluate: they \
                     were taken as applying; check them by hand or allow \
                     iam:SimulatePrincipalPolicy.",
                    role_name(f.role.as_deref()),
                    statements.into_iter().collect::<Vec<_>>().join(", ")
                ),
            );
            fnd.decided_by = Some("stagecheck".into());
            out.push(fnd);
        }
        if !f.log_group_exists {
            out.push(finding(
                Severity::Error,
                "log-group-not-found",
                s,
                &f.log_group,
                format!(
                    "Function {}'s log group {} does not exist, so its invocations cannot be \
                     proven: create it (or invoke the function once; Lambda creates it) and let \
                     the role write to it.",
                    f.name, f.log_group
                ),
            ));
        }
    }
}

fn role_name(role: Option<&str>) -> &str {
    role.map_or("(none)", |r| r.rsplit('/').next().unwrap_or(r))
}

/// API Gateway may invoke the function for every method of every route the
/// stage sends to it, by the SourceArn it presents.
fn permission_findings(
    d: &Deployment,
    stage: &StageView,
    f: &crate::deployment::Function,
    out: &mut Vec<Finding>,
) {
    let s = stage.name.as_str();
    if f.invoke_permissions.is_empty() {
        out.push(finding(
            Severity::Error,
            "missing-invoke-permission",
            s,
            &f.arn,
            format!(
                "Function {} has no resource-based policy statement letting API Gateway invoke \
                 it, so stage {s} answers 500 \"Invalid permissions on Lambda function\": add one \
                 (lambda add-permission --principal apigateway.amazonaws.com --source-arn \
                 arn:aws:execute-api:{}:{}:{}/{s}/*/*).",
                f.name, d.region, d.account, d.rest_api.id
            ),
        ));
        return;
    }
    let mut refused = Vec::new();
    for route in &stage.routes {
        if route.function.as_ref().map(|r| r.arn.as_str()) != Some(f.arn.as_str()) {
            continue;
        }
        let account = route
            .function
            .as_ref()
            .map_or(d.account.as_str(), |r| r.account.as_str());
        for method in route.methods() {
            let arn = crate::deployment::uri::source_arn(
                &d.region,
                account,
                &d.rest_api.id,
                s,
                method,
                &route.route.path,
            );
            let allowed = f.invoke_permissions.iter().any(|p| match &p.source_arn {
                None => true,
                Some(pattern) => policy::arn_matches(pattern, &arn),
            });
            if !allowed {
                refused.push((route.route.label(), method, arn));
            }
        }
    }
    if let Some((label, method, arn)) = refused.first() {
        let allowed: Vec<&str> = f
            .invoke_permissions
            .iter()
            .filter_map(|p| p.source_arn.as_deref())
            .collect();
        out.push(finding(
            Severity::Error,
            "source-arn-mismatch",
            s,
            &f.arn,
            format!(
                "Function {}'s permission lets API Gateway invoke it from {} only, not from {arn} \
                 ({method} of {label}{}), so stage {s} answers 500: add a permission with \
                 --source-arn arn:aws:execute-api:{}:{}:{}/{s}/*/*.",
                f.name,
                allowed.join(", "),
                if refused.len() > 1 {
                    format!(", and {} more", refused.len() - 1)
                } else {
                    String::new()
                },
                d.region,
                d.account,
                d.rest_api.id
            ),
        ));
    }
}

/// Two stages that invoke one function, or whose functions lead to one table.
fn shared(d: &Deployment, out: &mut Vec<Finding>) {
    for f in &d.functions {
        let stages: Vec<&str> = d
            .stages
            .iter()
            .filter(|s| s.function_arns().contains(&f.arn.as_str()))
            .map(|s| s.name.as_str())
            .collect();
        if stages.len() < 2 {
            continue;
        }
        for s in &stages {
            let others: Vec<&str> = stages.iter().filter(|o| *o != s).copied().collect();
            out.push(finding(
                Severity::Error,
                "shared-function",
                s,
                &f.arn,
                format!(
                    "Stages {} and {} both invoke {}, so one stage's traffic runs the other's \
                     function: give each stage its own function through its stage variables \
                     ({}).",
                    s,
                    others.join(", "),
                    f.name,
                    variables_text(d, s)
                ),
            ));
        }
    }
    for t in &d.tables {
        // The stages reaching the table through different functions (one
        // shared function is already its own finding).
        let mut by: Vec<(&str, &str)> = Vec::new();
        for s in &d.stages {
            for arn in s.function_arns() {
                if let Some(f) = d.function(arn)
                    && f.table.as_deref() == Some(&t.name)
                {
                    by.push((s.name.as_str(), f.name.as_str()));
                }
            }
        }
        let functions: BTreeSet<&str> = by.iter().map(|(_, f)| *f).collect();
        let stages: BTreeSet<&str> = by.iter().map(|(s, _)| *s).collect();
        if functions.len() < 2 || stages.len() < 2 {
            continue;
        }
        for s in &stages {
            let others: Vec<String> = by
                .iter()
                .filter(|(o, _)| o != s)
                .map(|(o, f)| format!("{o} ({f})"))
                .collect();
            let own: Vec<&str> = by.iter().filter(|(o, _)| o == s).map(|(_, f)| *f).collect();
            out.push(finding(
                Severity::Error,
                "shared-table",
                s,
                &t.arn,
                format!(
                    "Stage {s}'s function {} and stage {} lead to the same table {}: set each \
                     function's environment so the rule {} names a table of its own.",
                    own.join(", "),
                    others.join(", "),
                    t.name,
                    d.table_rule
                ),
            ));
        }
    }
}

fn variables_text(d: &Deployment, stage: &str) -> String {
    match d.stage(stage) {
        Some(s) if !s.variables.is_empty() => s
            .variables
            .iter()
            .map(|(k, v)| format!("{k} = {v:?}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "it sets none".into(),
    }
}

/// The same route running other code on two stages: what was verified on
/// one is not what runs on the other.
fn drift(d: &Deployment, out: &mut Vec<Finding>) {
    for (i, a) in d.stages.iter().enumerate() {
        for b in d.stages.iter().skip(i + 1) {
            let mut differing = Vec::new();
            for ra in &a.routes {
                let Some(rb) = b
                    .routes
                    .iter()
                    .find(|r| r.route.method == ra.route.method && r.route.path == ra.route.path)
                else {
                    continue;
                };
                let sha = |r: &crate::deployment::StageRoute| {
                    r.function
                        .as_ref()
                        .and_then(|f| d.function(&f.arn))
                        .and_then(|f| Some((f.name.clone(), f.code_sha256.clone()?)))
                };
                if let (Some((fa, sa)), Some((fb, sb))) = (sha(ra), sha(rb))
                    && sa != sb
                    && !differing
                        .iter()
                        .any(|(x, y, _, _): &(String, String, String, String)| *x == fa && *y == fb)
                {
                    differing.push((fa, fb, sa, sb));
                }
            }
            for (fa, fb, sa, sb) in differing {
                for (stage, other) in [(&a.name, &b.name), (&b.name, &a.name)] {
                    out.push(finding(
                        Severity::Warning,
                        "code-drift",
                        stage,
                        if stage == &a.name { &fa } else { &fb },
                        format!(
                            "Stage {} runs {fa} with code {} and stage {} runs {fb} with code {}: \
                             what was verified on {other} is not what runs on {stage}; deploy the \
                             same package to both functions.",
                            a.name,
                            short_sha(&sa),
                            b.name,
                            short_sha(&sb)
                        ),
                    ));
                }
            }
        }
    }
}

fn short_sha(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}
