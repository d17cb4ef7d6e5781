//! IAM policy evaluation, the part the sandbox enforces: a function's execution
//! role (what its DynamoDB calls may do) and its resource-based policy (who may
//! invoke it). moto stores policies but never evaluates them, and its
//! `SimulatePrincipalPolicy` is not implemented, so the documents are read back
//! and judged here, the way IAM does: an explicit `Deny` wins, then any `Allow`,
//! otherwise the request is implicitly denied.
//!
//! Supported: `Effect`, `Action`/`NotAction`, `Resource`/`NotResource`,
//! `Principal` (`"*"`, `{"Service": …}`, `{"AWS": "*"}`), as strings or lists,
//! with `*` and `?` wildcards (actions match case-insensitively, resources
//! case-sensitively, ARN conditions per colon-separated segment), and the
//! condition operators `String{Equals,NotEquals,EqualsIgnoreCase,Like,NotLike}`
//! and `Arn{Equals,NotEquals,Like,NotLike}` (keys case-insensitive). A
//! statement whose condition cannot be evaluated here (another operator) is
//! treated as failing closed: such an `Allow` allows nothing, such a `Deny`
//! denies.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Effect {
    Allow,
    Deny,
}

/// `Action` (the listed patterns) or `NotAction` (everything else); the same
/// for resources and principals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Patterns {
    Only(Vec<String>),
    Except(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Principal {
    /// No `Principal` element: an identity-based policy, the identity is the caller.
    Identity,
    Any,
    Services(Vec<String>),
    /// Accounts, roles, users: none of them is ever the caller in the sandbox.
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Condition {
    pub operator: String,
    pub key: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statement {
    pub sid: Option<String>,
    pub effect: Effect,
    pub principal: Principal,
    pub actions: Patterns,
    pub resources: Patterns,
    pub conditions: Vec<Condition>,
}

/// One policy document, and where it came from (a managed policy's ARN, for
/// the explicit-deny message AWS writes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub name: String,
    pub arn: Option<String>,
    pub statements: Vec<Statement>,
}

/// A request as IAM sees it.
pub struct Request<'a> {
    pub action: &'a str,
    pub resource: &'a str,
    /// The calling service principal (`apigateway.amazonaws.com`), for
    /// resource-based policies; `None` for the identity itself.
    pub service: Option<&'a str>,
    /// Condition keys (`aws:SourceArn`, `aws:SourceAccount`, …) and their values.
    pub context: &'a [(&'a str, &'a str)],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Names the managed policy that denied, when it was one.
    ExplicitDeny {
        policy_arn: Option<String>,
    },
    ImplicitDeny,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// IAM's order: any applicable explicit deny, else any applicable allow, else
/// the implicit deny. The order of policies and statements never matters.
pub fn evaluate(policies: &[Policy], request: &Request<'_>) -> Decision {
    let mut allowed = false;
    for policy in policies {
        for statement in &policy.statements {
            match statement.applies(request) {
                Applies::No => {}
                Applies::Yes if statement.effect == Effect::Allow => allowed = true,
                Applies::Yes | Applies::Unknown if statement.effect == Effect::Deny => {
                    return Decision::ExplicitDeny {
                        policy_arn: policy.arn.clone(),
                    };
                }
                // An allow whose condition we cannot judge allows nothing.
                _ => {}
            }
        }
    }
    if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

enum Applies {
    Yes,
    No,
    /// The statement matches but carries a condition this module cannot evaluate.
    Unknown,
}

impl Statement {
    fn applies(&self, request: &Request<'_>) -> Applies {
        let principal_ok = match (&self.principal, request.service) {
            (Principal::Identity, None) => true,
            (Principal::Identity, Some(_)) => false,
            (Principal::Any, _) => true,
            (Principal::Services(list), Some(service)) => {
                list.iter().any(|s| s.eq_ignore_ascii_case(service))
            }
            (Principal::Services(_), None) | (Principal::Other, _) => false,
        };
        if !principal_ok
            || !self.actions.matches(request.action, action_like)
            || !self.resources.matches(request.resource, wildcard_match)
        {
            return Applies::No;
        }
        let mut unknown = false;
        for condition in &self.conditions {
            match condition.holds(request.context) {
                Some(true) => {}
                Some(false) => return Applies::No,
                None => unknown = true,
            }
        }
        if unknown {
            Applies::Unknown
        } else {
            Applies::Yes
        }
    }
}

impl Patterns {
    fn matches(&self, value: &str, like: fn(&str, &str) -> bool) -> bool {
        match self {
            Patterns::Only(list) => list.iter().any(|p| like(p, value)),
            Patterns::Except(list) => !list.iter().any(|p| like(p, value)),
        }
    }
}

impl Condition {
    /// `None`: an operator this module does not implement.
    fn holds(&self, context: &[(&str, &str)]) -> Option<bool> {
        let value = context
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&self.key))
            .map(|(_, v)| *v);
        let (negated, test): (bool, fn(&str, &str) -> bool) = match self.operator.as_str() {
            "StringEquals" => (false, |p, v| p == v),
            "StringNotEquals" => (true, |p, v| p == v),
            "StringEqualsIgnoreCase" => (false, |p, v| p.eq_ignore_ascii_case(v)),
            "StringNotEqualsIgnoreCase" => (true, |p, v| p.eq_ignore_ascii_case(v)),
            "StringLike" => (false, wildcard_match),
            "StringNotLike" => (true, wildcard_match),
            "ArnEquals" => (false, arn_equals),
            "ArnNotEquals" => (true, arn_equals),
            "ArnLike" => (false, arn_like),
            "ArnNotLike" => (true, arn_like),
            _ => return None,
        };
        Some(match value {
            // A missing key fails every positive operator and satisfies the
            // negated ones, as in IAM.
            None => negated,
            Some(v) => {
                let any = self.values.iter().any(|p| test(p, v));
                any != negated
            }
        })
    }
}

/// Actions are case-insensitive (`DynamoDB:putitem` is `dynamodb:PutItem`).
fn action_like(pattern: &str, action: &str) -> bool {
    wildcard_match(&pattern.to_ascii_lowercase(), &action.to_ascii_lowercase())
}

/// `*` any run of characters (also none), `?` exactly one; everything else literal.
pub fn wildcard_match(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    // Greedy with backtracking to the last star: linear in practice.
    let (mut pi, mut vi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == v[vi])) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// ARN conditions compare the six colon-separated parts one by one; a wildcard
/// never crosses a colon of the first five.
fn arn_like(pattern: &str, arn: &str) -> bool {
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == 6 && a.len() == 6 && p.iter().zip(&a).all(|(p, a)| wildcard_match(p, a))
}

fn arn_equals(pattern: &str, arn: &str) -> bool {
    // ArnEquals accepts wildcards too, per IAM's documentation of the operator.
    arn_like(pattern, arn)
}

/// Parses a policy document (as IAM returns it: JSON, possibly URL-encoded).
pub fn parse(name: &str, arn: Option<&str>, document: &str) -> Result<Policy, String> {
    let text = if document.trim_start().starts_with('{') {
        document.to_string()
    } else {
        super::form_decode(document)
    };
    let doc: Value =
        serde_json::from_str(&text).map_err(|e| format!("policy {name} is not JSON ({e})"))?;
    let statements = match doc.get("Statement") {
        Some(Value::Array(list)) => list.iter().collect::<Vec<_>>(),
        Some(one @ Value::Object(_)) => vec![one],
        _ => return Err(format!("policy {name} has no Statement")),
    };
    let statements = statements
        .into_iter()
        .map(|s| statement(name, s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Policy {
        name: name.to_string(),
        arn: arn.map(str::to_string),
        statements,
    })
}

fn statement(policy: &str, s: &Value) -> Result<Statement, String> {
    let effect = match s.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        other => {
            return Err(format!(
                "policy {policy}: Effect {other:?} is not Allow or Deny"
            ));
        }
    };
    let patterns = |yes: &str, no: &str| -> Result<Patterns, String> {
        match (s.get(yes), s.get(no)) {
            (Some(v), None) => Ok(Patterns::Only(strings(v))),
            (None, Some(v)) => Ok(Patterns::Except(strings(v))),
            (None, None) => {
                // Resource-based policies may leave Resource out: it is the
                // resource the policy is attached to.
                if yes == "Resource" {
                    Ok(Patterns::Only(vec!["*".into()]))
                } else {
                    Err(format!(
                        "policy {policy}: a statement has neither {yes} nor {no}"
                    ))
                }
            }
            (Some(_), Some(_)) => Err(format!(
                "policy {policy}: a statement has both {yes} and {no}"
            )),
        }
    };
    let principal = match s.get("Principal") {
        None => Principal::Identity,
        Some(Value::String(star)) if star == "*" => Principal::Any,
        Some(Value::Object(map)) => {
            if map
                .get("AWS")
                .is_some_and(|v| strings(v).iter().any(|a| a == "*"))
            {
                Principal::Any
            } else if let Some(services) = map.get("Service") {
                Principal::Services(strings(services))
            } else {
                Principal::Other
            }
        }
        Some(_) => Principal::Other,
    };
    let mut conditions = Vec::new();
    if let Some(Value::Object(ops)) = s.get("Condition") {
        for (operator, keys) in ops {
            if let Value::Object(keys) = keys {
                for (key, values) in keys {
                    conditions.push(Condition {
                        operator: operator.clone(),
                        key: key.clone(),
                        values: strings(values),
                    });
                }
            }
        }
    }
    Ok(Statement {
        sid: s.get("Sid").and_then(Value::as_str).map(str::to_string),
        effect,
        principal,
        actions: patterns("Action", "NotAction")?,
        resources: patterns("Resource", "NotResource")?,
        conditions,
    })
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(list) => list
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The text DynamoDB answers a denied call with, as an assumed role sees it.
pub fn access_denied_message(
    account: &str,
    role: &str,
    session: &str,
    action: &str,
    resource: &str,
    decision: &Decision,
) -> String {
    let who = format!("User: arn:aws:sts::{account}:assumed-role/{role}/{session}");
    match decision {
        Decision::ExplicitDeny {
            policy_arn: Some(arn),
        } => format!(
            "{who} is not authorized to perform: {action} on resource: {resource} with an explicit deny in an identity-based policy: {arn}"
        ),
        Decision::ExplicitDeny { policy_arn: None } => format!(
            "{who} is not authorized to perform: {action} on resource: {resource} with an explicit deny in an identity-based policy"
        ),
        _ => format!(
            "{who} is not authorized to perform: {action} on resource: {resource} because no identity-based policy allows the {action} action"
        ),
    }
}

/// A function's execution role, with its policy documents as they were when
/// the route table was resolved: what the function's calls are judged against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecutionRole {
    pub arn: String,
    pub name: String,
    /// Lambda's role session is the function's name.
    pub session: String,
    pub account: String,
    #[serde(skip)]
    pub policies: Vec<Policy>,
}

impl ExecutionRole {
    /// `Err` carries the AccessDeniedException message DynamoDB would answer.
    pub fn authorize(&self, action: &str, resource: &str) -> Result<(), String> {
        let decision = evaluate(
            &self.policies,
            &Request {
                action,
                resource,
                service: None,
                context: &[],
            },
        );
        if decision.allowed() {
            return Ok(());
        }
        Err(access_denied_message(
            &self.account,
            &self.name,
            &self.session,
            action,
            resource,
            &decision,
        ))
    }
}

/// Reads a role's inline policies (ListRolePolicies + GetRolePolicy) and its
/// attached managed policies (ListAttachedRolePolicies + GetPolicy's default
/// version). A role that does not exist has no policies: it allows nothing.
pub async fn load_role(
    iam: &aws_sdk_iam::Client,
    role_arn: &str,
    session: &str,
) -> Result<ExecutionRole, crate::SandboxError> {
    use crate::aws::aws_error;
    // arn:aws:iam::{account}:role/{path/}{name}
    let account = role_arn.split(':').nth(4).unwrap_or_default().to_string();
    let name = role_arn.rsplit('/').next().unwrap_or(role_arn).to_string();
    let mut role = ExecutionRole {
        arn: role_arn.to_string(),
        name: name.clone(),
        session: session.to_string(),
        account,
        policies: Vec::new(),
    };
    let mut marker: Option<String> = None;
    let mut inline = Vec::new();
    loop {
        let out = match iam
            .list_role_policies()
            .role_name(&name)
            .set_marker(marker.clone())
            .send()
            .await
        {
            Ok(o) => o,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_no_such_entity_exception()) =>
            {
                return Ok(role);
            }
            Err(e) => return Err(aws_error(format!("listing role {name}'s policies"), e)),
        };
        inline.extend(out.policy_names().iter().cloned());
        match out.marker() {
            Some(m) if out.is_truncated() && Some(m) != marker.as_deref() => {
                marker = Some(m.to_string())
            }
            _ => break,
        }
    }
    for policy_name in inline {
        let out = iam
            .get_role_policy()
            .role_name(&name)
            .policy_name(&policy_name)
            .send()
            .await
            .map_err(|e| aws_error(format!("reading role {name}'s policy {policy_name}"), e))?;
        match parse(&policy_name, None, out.policy_document()) {
            Ok(p) => role.policies.push(p),
            Err(e) => eprintln!("sandbox: warning: role {name}: {e}; it allows nothing"),
        }
    }
    let mut marker: Option<String> = None;
    let mut attached = Vec::new();
    loop {
        let out = iam
            .list_attached_role_policies()
            .role_name(&name)
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| aws_error(format!("listing role {name}'s attached policies"), e))?;
        attached.extend(
            out.attached_policies()
                .iter()
                .filter_map(|p| p.policy_arn().map(str::to_string)),
        );
        match out.marker() {
            Some(m) if out.is_truncated() && Some(m) != marker.as_deref() => {
                marker = Some(m.to_string())
            }
            _ => break,
        }
    }
    for policy_arn in attached {
        let policy = iam
            .get_policy()
            .policy_arn(&policy_arn)
            .send()
            .await
            .map_err(|e| aws_error(format!("reading policy {policy_arn}"), e))?;
        let Some(version) = policy.policy().and_then(|p| p.default_version_id()) else {
            continue;
        };
        let out = iam
            .get_policy_version()
            .policy_arn(&policy_arn)
            .version_id(version)
            .send()
            .await
            .map_err(|e| aws_error(format!("reading policy {policy_arn} {version}"), e))?;
        let Some(document) = out.policy_version().and_then(|v| v.document()) else {
            continue;
        };
        let policy_name = policy_arn.rsplit('/').next().unwrap_or(&policy_arn);
        match parse(policy_name, Some(&policy_arn), document) {
            Ok(p) => role.policies.push(p),
            Err(e) => eprintln!("sandbox: warning: role {name}: {e}; it allows nothing"),
        }
    }
    Ok(role)
}

/// Whether the function's resource-based policy lets API Gateway invoke it for
/// a request whose execute-api ARN is `source_arn`.
pub fn allows_invoke(
    policy: Option<&Policy>,
    function_arn: &str,
    source_arn: &str,
    account: &str,
) -> bool {
    let Some(policy) = policy else {
        return false;
    };
    evaluate(
        std::slice::from_ref(policy),
        &Request {
            action: "lambda:InvokeFunction",
            resource: function_arn,
            service: Some("apigateway.amazonaws.com"),
            context: &[
                ("aws:SourceArn", source_arn),
                ("aws:SourceAccount", account),
            ],
        },
    )
    .allowed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TABLE: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/test-User";

    fn doc(json: &str) -> Policy {
        parse("p", None, json).unwrap()
    }

    fn identity(action: &str, resource: &str) -> Request<'static> {
        // Leaked only in tests: keeps the call sites short.
        Request {
            action: Box::leak(action.to_string().into_boxed_str()),
            resource: Box::leak(resource.to_string().into_boxed_str()),
            service: None,
            context: &[],
        }
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*c", "abbbc"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("*User", "test-User"));
        assert!(!wildcard_match("User", "test-User"));
        assert!(wildcard_match("a*b*c", "aXbYbZc"));
        assert!(!wildcard_match("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn allow_needs_action_and_resource() {
        let p = doc(&format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":["dynamodb:GetItem","dynamodb:PutItem"],"Resource":"{TABLE}"}}]}}"#
        ));
        let ps = [p];
        assert_eq!(
            evaluate(&ps, &identity("dynamodb:PutItem", TABLE)),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&ps, &identity("DynamoDB:putitem", TABLE)),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&ps, &identity("dynamodb:Scan", TABLE)),
            Decision::ImplicitDeny
        );
        assert_eq!(
            evaluate(
                &ps,
                &identity(
                    "dynamodb:PutItem",
                    "arn:aws:dynamodb:us-east-1:123456789012:table/User"
                )
            ),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn explicit_deny_wins_and_names_a_managed_policy() {
        let allow = doc(r#"{"Statement":{"Effect":"Allow","Action":"dynamodb:*","Resource":"*"}}"#);
        let deny = parse(
            "deny",
            Some("arn:aws:iam::123456789012:policy/deny"),
            r#"{"Statement":[{"Effect":"Deny","Action":"dynamodb:Delete*","Resource":"*"}]}"#,
        )
        .unwrap();
        let ps = [allow, deny];
        assert_eq!(
            evaluate(&ps, &identity("dynamodb:GetItem", TABLE)),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&ps, &identity("dynamodb:DeleteItem", TABLE)),
            Decision::ExplicitDeny {
                policy_arn: Some("arn:aws:iam::123456789012:policy/deny".into())
            }
        );
    }

    #[test]
    fn not_action_and_not_resource() {
        let p = doc(
            r#"{"Statement":[{"Effect":"Allow","NotAction":"dynamodb:DeleteItem","NotResource":"arn:aws:dynamodb:*:*:table/User"}]}"#,
        );
        let ps = [p];
        assert!(evaluate(&ps, &identity("dynamodb:PutItem", TABLE)).allowed());
        assert!(!evaluate(&ps, &identity("dynamodb:DeleteItem", TABLE)).allowed());
        assert!(
            !evaluate(
                &ps,
                &identity(
                    "dynamodb:PutItem",
                    "arn:aws:dynamodb:us-east-1:1:table/User"
                )
            )
            .allowed()
        );
    }

    #[test]
    fn url_encoded_documents_are_read() {
        let p = parse(
            "p",
            None,
            "%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22dynamodb%3AScan%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D",
        )
        .unwrap();
        assert!(evaluate(&[p], &identity("dynamodb:Scan", TABLE)).allowed());
    }

    const SOURCE: &str = "arn:aws:execute-api:us-east-1:123456789012:abc123/test/GET/user/{id}";

    fn invoke(source_arn: &'static str) -> Request<'static> {
        let context: &'static [(&'static str, &'static str)] = Box::leak(
            vec![
                ("AWS:SourceArn", source_arn),
                ("AWS:SourceAccount", "123456789012"),
            ]
            .into_boxed_slice(),
        );
        Request {
            action: "lambda:InvokeFunction",
            resource: "arn:aws:lambda:us-east-1:123456789012:function:test-user-service",
            service: Some("apigateway.amazonaws.com"),
            context,
        }
    }

    fn permission(source: &str) -> Policy {
        doc(&format!(
            r#"{{"Version":"2012-10-17","Id":"default","Statement":[{{"Sid":"apigateway-invoke-users","Effect":"Allow","Principal":{{"Service":"apigateway.amazonaws.com"}},"Action":"lambda:InvokeFunction","Resource":"arn:aws:lambda:us-east-1:123456789012:function:test-user-service","Condition":{{"ArnLike":{{"AWS:SourceArn":"{source}"}}}}}}]}}"#
        ))
    }

    #[test]
    fn resource_policy_checks_the_source_arn() {
        let ok = |p: &str| evaluate(&[permission(p)], &invoke(SOURCE)).allowed();
        assert!(ok("arn:aws:execute-api:us-east-1:123456789012:abc123/*"));
        assert!(ok(
            "arn:aws:execute-api:us-east-1:123456789012:abc123/test/*/user/*"
        ));
        assert!(ok(
            "arn:aws:execute-api:us-east-1:123456789012:abc123/*/GET/user/{id}"
        ));
        assert!(ok("arn:aws:execute-api:*:*:abc123/*"));
        assert!(!ok(
            "arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*"
        ));
        assert!(!ok("arn:aws:execute-api:us-east-1:123456789012:other/*"));
        assert!(!ok(
            "arn:aws:execute-api:us-east-1:123456789012:abc123/*/POST/*"
        ));
        // A wildcard does not cross the ARN's first colons.
        assert!(!ok("arn:aws:execute-api:us-east-1*"));
        // Another principal does not let API Gateway in.
        let lambda_only = doc(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"lambda:InvokeFunction"}]}"#,
        );
        assert!(!evaluate(&[lambda_only], &invoke(SOURCE)).allowed());
        let star = doc(
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"lambda:*","Resource":"*"}]}"#,
        );
        assert!(evaluate(&[star], &invoke(SOURCE)).allowed());
    }

    #[test]
    fn unknown_conditions_fail_closed() {
        let allow = doc(
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}}]}"#,
        );
        assert!(!evaluate(&[allow], &identity("dynamodb:GetItem", TABLE)).allowed());
        let deny = doc(
            r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"}}}]}"#,
        );
        assert!(!evaluate(&[deny], &identity("dynamodb:GetItem", TABLE)).allowed());
    }

    #[test]
    fn the_denied_message_is_dynamodbs() {
        let m = access_denied_message(
            "123456789012",
            "test-user-service-role",
            "test-user-service",
            "dynamodb:PutItem",
            TABLE,
            &Decision::ImplicitDeny,
        );
        assert_eq!(
            m,
            "User: arn:aws:sts::123456789012:assumed-role/test-user-service-role/test-user-service is not authorized to perform: dynamodb:PutItem on resource: arn:aws:dynamodb:us-east-1:123456789012:table/test-User because no identity-based policy allows the dynamodb:PutItem action"
        );
    }

    fn arb_statement() -> impl Strategy<Value = Statement> {
        let action = prop::sample::select(vec![
            "dynamodb:*",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Get*",
            "*",
            "s3:*",
            "dynamodb:?etItem",
        ]);
        let resource = prop::sample::select(vec![
            "*",
            TABLE,
            "arn:aws:dynamodb:*:*:table/*User",
            "arn:aws:dynamodb:us-east-1:123456789012:table/User",
        ]);
        (
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(action, 1..3),
            prop::collection::vec(resource, 1..3),
        )
            .prop_map(|(allow, not_action, not_resource, actions, resources)| {
                let own = |v: Vec<&str>| v.into_iter().map(str::to_string).collect::<Vec<_>>();
                Statement {
                    sid: None,
                    effect: if allow { Effect::Allow } else { Effect::Deny },
                    principal: Principal::Identity,
                    actions: if not_action {
                        Patterns::Except(own(actions))
                    } else {
                        Patterns::Only(own(actions))
                    },
                    resources: if not_resource {
                        Patterns::Except(own(resources))
                    } else {
                        Patterns::Only(own(resources))
                    },
                    conditions: Vec::new(),
                }
            })
    }

    fn one_policy(statements: Vec<Statement>) -> Vec<Policy> {
        vec![Policy {
            name: "p".into(),
            arn: None,
            statements,
        }]
    }

    proptest! {
        #[test]
        fn statement_order_is_irrelevant(
            statements in prop::collection::vec(arb_statement(), 0..6),
            action in prop::sample::select(vec!["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan"]),
            seed in any::<u64>(),
        ) {
            let request = identity(action, TABLE);
            let before = evaluate(&one_policy(statements.clone()), &request);
            let mut shuffled = statements;
            fastrand::Rng::with_seed(seed).shuffle(&mut shuffled);
            // Split across policies too: where a statement lives does not matter.
            let (a, b) = shuffled.split_at(shuffled.len() / 2);
            let split = vec![
                Policy { name: "a".into(), arn: None, statements: a.to_vec() },
                Policy { name: "b".into(), arn: None, statements: b.to_vec() },
            ];
            prop_assert_eq!(before, evaluate(&split, &request));
        }

        #[test]
        fn an_applicable_explicit_deny_always_wins(
            statements in prop::collection::vec(arb_statement(), 0..6),
            action in prop::sample::select(vec!["dynamodb:GetItem", "dynamodb:PutItem"]),
            at in any::<prop::sample::Index>(),
        ) {
            let request = identity(action, TABLE);
            let mut with_deny = statements;
            let deny = Statement {
                sid: None,
                effect: Effect::Deny,
                principal: Principal::Identity,
                actions: Patterns::Only(vec![action.to_string()]),
                resources: Patterns::Only(vec!["*".into()]),
                conditions: Vec::new(),
            };
            let i = at.index(with_deny.len() + 1);
            with_deny.insert(i, deny);
            let denied = matches!(
                evaluate(&one_policy(with_deny), &request),
                Decision::ExplicitDeny { .. }
            );
            prop_assert!(denied);
        }

        #[test]
        fn allow_only_when_some_allow_applies_and_no_deny(
            statements in prop::collection::vec(arb_statement(), 0..6),
            action in prop::sample::select(vec!["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan"]),
        ) {
            let request = identity(action, TABLE);
            let applies = |s: &Statement| matches!(s.applies(&request), Applies::Yes);
            let any_allow = statements.iter().any(|s| s.effect == Effect::Allow && applies(s));
            let any_deny = statements.iter().any(|s| s.effect == Effect::Deny && applies(s));
            let decision = evaluate(&one_policy(statements), &request);
            prop_assert_eq!(decision.allowed(), any_allow && !any_deny);
            prop_assert_eq!(matches!(decision, Decision::ExplicitDeny { .. }), any_deny);
        }

        #[test]
        fn no_policy_allows_nothing(action in "[a-z]{1,8}:[A-Za-z]{1,8}") {
            prop_assert_eq!(evaluate(&[], &identity(&action, TABLE)), Decision::ImplicitDeny);
        }

        #[test]
        fn a_star_matches_everything_and_literals_match_themselves(s in "[ -~]{0,30}") {
            prop_assert!(wildcard_match("*", &s));
            let literal: String = s.chars().filter(|c| *c != '*' && *c != '?').collect();
            prop_assert!(wildcard_match(&literal, &literal));
        }
    }
}
