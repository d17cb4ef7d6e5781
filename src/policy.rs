//! IAM policy evaluation, for what a stage's function may reach: the
//! decisions `SimulatePrincipalPolicy` gives where an account allows it, made
//! here from the policy documents where it does not (moto does not implement
//! it; a user may lack `iam:SimulatePrincipalPolicy`).
//!
//! Identity-based policies only, as a function's execution role holds them:
//! an explicit `Deny` wins, then any `Allow`, else the implicit deny. `Action`
//! and `NotAction` match case-insensitively with `*` and `?`; `Resource` and
//! `NotResource` match an ARN segment by segment (a wildcard never spans a
//! colon, except in the last segment, which holds the rest), as AWS documents
//! for `ArnLike`. Conditions are not evaluated: a statement with one is taken
//! as applying, and the decision lists it, so a finding can say so.

use serde_json::Value;

/// What IAM answers for one action on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Decision {
    Allowed,
    ExplicitDeny,
    ImplicitDeny,
}

/// A decision and the statements that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub decision: Decision,
    /// The statements (by Sid, or `#index` in their policy) that matched with
    /// the decision's effect.
    pub by: Vec<String>,
    /// Matching statements whose `Condition` was not evaluated.
    pub unevaluated_conditions: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// A list of patterns that either names what applies (`Action`) or what does
/// not (`NotAction`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    Any(Vec<String>),
    Not(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub id: String,
    pub effect: Effect,
    pub actions: Matcher,
    pub resources: Matcher,
    pub has_condition: bool,
}

/// A named policy document, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub statements: Vec<Statement>,
}

/// Why a policy document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {policy}: {problem}")]
pub struct PolicyError {
    pub policy: String,
    pub problem: String,
}

impl Policy {
    /// Reads a policy document. IAM hands documents out URL-encoded
    /// (GetRolePolicy, GetPolicyVersion): both forms are accepted.
    pub fn parse(name: &str, text: &str) -> Result<Policy, PolicyError> {
        let fail = |problem: String| PolicyError {
            policy: name.to_string(),
            problem,
        };
        let decoded;
        let text = if text.trim_start().starts_with('{') {
            text
        } else {
            decoded = percent_decode(text);
            &decoded
        };
        let doc: Value = serde_json::from_str(text).map_err(|e| fail(format!("not JSON ({e})")))?;
        let statements = match doc.get("Statement") {
            Some(Value::Array(items)) => items.clone(),
            Some(one @ Value::Object(_)) => vec![one.clone()],
            _ => return Err(fail("no Statement".into())),
        };
        let mut out = Vec::with_capacity(statements.len());
        for (i, s) in statements.iter().enumerate() {
            let id = s
                .get("Sid")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("#{i}"));
            let effect = match s.get("Effect").and_then(Value::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                other => {
                    return Err(fail(format!(
                        "statement {id}: Effect must be Allow or Deny, not {other:?}"
                    )));
                }
            };
            let actions = matcher(s, "Action", "NotAction")
                .map_err(|p| fail(format!("statement {id}: {p}")))?;
            let resources = matcher(s, "Resource", "NotResource")
                .map_err(|p| fail(format!("statement {id}: {p}")))?;
            out.push(Statement {
                id,
                effect,
                actions,
                resources,
                has_condition: s.get("Condition").is_some_and(|c| !c.is_null()),
            });
        }
        Ok(Policy {
            name: name.to_string(),
            statements: out,
        })
    }
}

fn matcher(s: &Value, yes: &str, no: &str) -> Result<Matcher, String> {
    let list = |v: &Value| -> Result<Vec<String>, String> {
        match v {
            Value::String(one) => Ok(vec![one.clone()]),
            Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("{yes}/{no} entries must be strings"))
                })
                .collect(),
            _ => Err(format!("{yes}/{no} must be a string or a list")),
        }
    };
    match (s.get(yes), s.get(no)) {
        (Some(v), None) => Ok(Matcher::Any(list(v)?)),
        (None, Some(v)) => Ok(Matcher::Not(list(v)?)),
        (Some(_), Some(_)) => Err(format!("has both {yes} and {no}")),
        (None, None) => Err(format!("has neither {yes} nor {no}")),
    }
}

impl Matcher {
    fn applies(&self, matches: impl Fn(&str) -> bool) -> bool {
        match self {
            Matcher::Any(patterns) => patterns.iter().any(|p| matches(p)),
            Matcher::Not(patterns) => !patterns.iter().any(|p| matches(p)),
        }
    }
}

impl Statement {
    pub fn applies(&self, action: &str, resource: &str) -> bool {
        self.actions.applies(|p| action_matches(p, action))
            && self.resources.applies(|p| arn_matches(p, resource))
    }
}

/// The decision for `action` on `resource` under all of `policies` together
/// (a role's inline and attached policies).
pub fn evaluate(policies: &[Policy], action: &str, resource: &str) -> Evaluation {
    let mut allow = Vec::new();
    let mut deny = Vec::new();
    let mut conditional = Vec::new();
    for policy in policies {
        for s in &policy.statements {
            if !s.applies(action, resource) {
                continue;
            }
            let name = format!("{}/{}", policy.name, s.id);
            if s.has_condition {
                conditional.push(name.clone());
            }
            match s.effect {
                Effect::Allow => allow.push(name),
                Effect::Deny => deny.push(name),
            }
        }
    }
    let (decision, by) = if !deny.is_empty() {
        (Decision::ExplicitDeny, deny)
    } else if !allow.is_empty() {
        (Decision::Allowed, allow)
    } else {
        (Decision::ImplicitDeny, Vec::new())
    };
    let unevaluated_conditions = conditional.into_iter().filter(|c| by.contains(c)).collect();
    Evaluation {
        decision,
        by,
        unevaluated_conditions,
    }
}

/// `service:Action` patterns: case-insensitive, `*` and `?` anywhere.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    glob(
        pattern.to_ascii_lowercase().as_bytes(),
        action.to_ascii_lowercase().as_bytes(),
    )
}

/// ARN patterns as `Resource` and `ArnLike` read them: `*` alone matches any
/// ARN; otherwise each of the six colon-separated parts is matched on its own
/// (the sixth holds the rest of the ARN, colons included), case-sensitively.
pub fn arn_matches(pattern: &str, arn: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    if !pattern.starts_with("arn:") {
        // Not an ARN pattern (a bare name): matched as one string.
        return glob(pattern.as_bytes(), arn.as_bytes());
    }
    if p.len() != 6 || a.len() != 6 {
        // An ARN pattern with fewer segments matches no ARN.
        return false;
    }
    p.iter()
        .zip(&a)
        .all(|(p, a)| glob(p.as_bytes(), a.as_bytes()))
}

/// `*` (any run, possibly empty) and `?` (one character) over bytes; linear
/// time with one backtrack point, so a hostile pattern cannot stall an audit.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TEST_TABLE: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/test-User";
    const PROD_TABLE: &str = "arn:aws:dynamodb:us-east-1:123456789012:table/User";

    fn policy(json: &str) -> Policy {
        Policy::parse("p", json).unwrap()
    }

    fn decide(p: &Policy, action: &str, resource: &str) -> Decision {
        evaluate(std::slice::from_ref(p), action, resource).decision
    }

    #[test]
    fn a_role_scoped_to_its_table_reaches_only_that_table() {
        let p = policy(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
               "Action":["dynamodb:GetItem","dynamodb:PutItem"],
               "Resource":"arn:aws:dynamodb:us-east-1:123456789012:table/test-User"}]}"#,
        );
        assert_eq!(
            decide(&p, "dynamodb:PutItem", TEST_TABLE),
            Decision::Allowed
        );
        assert_eq!(
            decide(&p, "dynamodb:PutItem", PROD_TABLE),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decide(&p, "dynamodb:Scan", TEST_TABLE),
            Decision::ImplicitDeny
        );
        // Actions are case-insensitive, as IAM reads them.
        assert_eq!(
            decide(&p, "DynamoDB:putitem", TEST_TABLE),
            Decision::Allowed
        );
    }

    #[test]
    fn a_wildcard_resource_reaches_the_other_stages_table() {
        let p = policy(
            r#"{"Statement":{"Effect":"Allow","Action":"dynamodb:*",
               "Resource":"arn:aws:dynamodb:*:*:table/*User"}}"#,
        );
        assert_eq!(
            decide(&p, "dynamodb:PutItem", PROD_TABLE),
            Decision::Allowed
        );
        assert_eq!(
            decide(&p, "dynamodb:PutItem", TEST_TABLE),
            Decision::Allowed
        );
        let q = policy(
            r#"{"Statement":{"Effect":"Allow","Action":"dynamodb:?etItem",
               "Resource":"arn:aws:dynamodb:us-east-1:123456789012:table/test-*"}}"#,
        );
        assert_eq!(
            decide(&q, "dynamodb:GetItem", TEST_TABLE),
            Decision::Allowed
        );
        assert_eq!(
            decide(&q, "dynamodb:PutItem", TEST_TABLE),
            Decision::ImplicitDeny
        );
        assert_eq!(
            decide(&q, "dynamodb:GetItem", PROD_TABLE),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn an_explicit_deny_wins_over_any_allow() {
        // IAM's documentation: an explicit deny overrides every allow.
        let allow_all = policy(r#"{"Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#);
        let deny = Policy::parse(
            "guard",
            r#"{"Statement":[{"Sid":"NoProd","Effect":"Deny","Action":"dynamodb:*",
                "Resource":"arn:aws:dynamodb:*:*:table/User"}]}"#,
        )
        .unwrap();
        let both = [allow_all, deny];
        let e = evaluate(&both, "dynamodb:DeleteItem", PROD_TABLE);
        assert_eq!(e.decision, Decision::ExplicitDeny);
        assert_eq!(e.by, vec!["guard/NoProd".to_string()]);
        assert_eq!(
            evaluate(&both, "dynamodb:DeleteItem", TEST_TABLE).decision,
            Decision::Allowed
        );
    }

    #[test]
    fn not_action_and_not_resource_invert_the_match() {
        // NotAction with Allow: everything except IAM (IAM's documentation example).
        let p = policy(r#"{"Statement":{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}}"#);
        assert_eq!(
            decide(&p, "dynamodb:PutItem", PROD_TABLE),
            Decision::Allowed
        );
        assert_eq!(decide(&p, "iam:CreateUser", "*"), Decision::ImplicitDeny);
        // NotResource with Deny: refuse everything but test's tables.
        let q = policy(
            r#"{"Statement":[{"Effect":"Allow","Action":"dynamodb:*","Resource":"*"},
               {"Effect":"Deny","Action":"dynamodb:*",
                "NotResource":"arn:aws:dynamodb:us-east-1:123456789012:table/test-*"}]}"#,
        );
        assert_eq!(
            decide(&q, "dynamodb:PutItem", TEST_TABLE),
            Decision::Allowed
        );
        assert_eq!(
            decide(&q, "dynamodb:PutItem", PROD_TABLE),
            Decision::ExplicitDeny
        );
    }

    #[test]
    fn a_wildcard_does_not_span_arn_segments() {
        // `*` in the Region segment cannot eat the account.
        assert!(!arn_matches(
            "arn:aws:dynamodb:us-*:table/User",
            "arn:aws:dynamodb:us-east-1:123456789012:table/User"
        ));
        assert!(arn_matches(
            "arn:aws:dynamodb:us-*:*:table/*",
            "arn:aws:dynamodb:us-east-1:123456789012:table/User"
        ));
        // The last segment holds the rest, colons included.
        assert!(arn_matches(
            "arn:aws:execute-api:us-east-1:123456789012:abc/*",
            "arn:aws:execute-api:us-east-1:123456789012:abc/test/GET/user/{id}"
        ));
        assert!(!arn_matches(
            "arn:aws:execute-api:us-east-1:123456789012:abc/prod/*/*",
            "arn:aws:execute-api:us-east-1:123456789012:abc/test/GET/user"
        ));
        assert!(arn_matches("*", "anything"));
    }

    #[test]
    fn conditions_are_reported_not_evaluated() {
        let p = policy(
            r#"{"Statement":{"Sid":"Tagged","Effect":"Allow","Action":"dynamodb:PutItem",
               "Resource":"*","Condition":{"StringEquals":{"aws:ResourceTag/env":"test"}}}}"#,
        );
        let e = evaluate(std::slice::from_ref(&p), "dynamodb:PutItem", PROD_TABLE);
        assert_eq!(e.decision, Decision::Allowed);
        assert_eq!(e.unevaluated_conditions, vec!["p/Tagged".to_string()]);
    }

    #[test]
    fn reads_url_encoded_documents_and_refuses_broken_ones() {
        let encoded = "%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22s3%3A*%22%2C%22Resource%22%3A%22*%22%7D%5D%7D";
        let p = Policy::parse("inline", encoded).unwrap();
        assert_eq!(
            decide(&p, "s3:GetObject", "arn:aws:s3:::b/k"),
            Decision::Allowed
        );
        for bad in [
            "{",
            r#"{"Statement":[{"Effect":"Maybe","Action":"*","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Action":"*","NotAction":"x","Resource":"*"}]}"#,
            r#"{"Statement":[{"Effect":"Allow","Resource":"*"}]}"#,
            r#"{"Version":"2012-10-17"}"#,
        ] {
            let err = Policy::parse("bad", bad).unwrap_err();
            assert!(err.to_string().starts_with("policy bad: "), "{err}");
        }
    }

    /// The reference model: a plain recursive glob, and evaluation as IAM's
    /// documentation states it (deny if any deny applies, else allow if any
    /// allow applies, else implicit deny), with no early exits.
    fn reference_glob(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                reference_glob(&p[1..], t) || (!t.is_empty() && reference_glob(p, &t[1..]))
            }
            (Some(b'?'), Some(_)) => reference_glob(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => reference_glob(&p[1..], &t[1..]),
            _ => false,
        }
    }

    fn reference(policies: &[Policy], action: &str, resource: &str) -> Decision {
        let applies = |s: &Statement| {
            let act = |pat: &str| {
                reference_glob(
                    pat.to_lowercase().as_bytes(),
                    action.to_lowercase().as_bytes(),
                )
            };
            let res = |pat: &str| {
                if pat == "*" {
                    return true;
                }
                let ps: Vec<&str> = pat.splitn(6, ':').collect();
                let rs: Vec<&str> = resource.splitn(6, ':').collect();
                if !pat.starts_with("arn:") {
                    reference_glob(pat.as_bytes(), resource.as_bytes())
                } else if ps.len() == 6 && rs.len() == 6 {
                    (0..6).all(|i| reference_glob(ps[i].as_bytes(), rs[i].as_bytes()))
                } else {
                    false
                }
            };
            let a = match &s.actions {
                Matcher::Any(v) => v.iter().any(|p| act(p)),
                Matcher::Not(v) => v.iter().all(|p| !act(p)),
            };
            let r = match &s.resources {
                Matcher::Any(v) => v.iter().any(|p| res(p)),
                Matcher::Not(v) => v.iter().all(|p| !res(p)),
            };
            a && r
        };
        let all: Vec<&Statement> = policies.iter().flat_map(|p| &p.statements).collect();
        if all.iter().any(|s| s.effect == Effect::Deny && applies(s)) {
            Decision::ExplicitDeny
        } else if all.iter().any(|s| s.effect == Effect::Allow && applies(s)) {
            Decision::Allowed
        } else {
            Decision::ImplicitDeny
        }
    }

    fn action_pattern() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_string()),
            Just("dynamodb:*".to_string()),
            Just("dynamodb:PutItem".to_string()),
            Just("dynamodb:?etItem".to_string()),
            Just("DynamoDB:getitem".to_string()),
            Just("s3:*".to_string()),
            "[a-z]{1,3}:[A-Za-z*?]{1,6}",
        ]
    }

    fn resource_pattern() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_string()),
            Just("arn:aws:dynamodb:*:*:table/*".to_string()),
            Just("arn:aws:dynamodb:us-east-1:123456789012:table/test-*".to_string()),
            Just("arn:aws:dynamodb:us-east-1:123456789012:table/User".to_string()),
            Just("arn:aws:dynamodb:*:*:table/*User".to_string()),
            Just("arn:aws:dynamodb:us-*:table/User".to_string()),
            "arn:aws:dynamodb:[a-z*?-]{0,4}:[0-9*]{0,3}:table/[A-Za-z*?-]{0,6}",
        ]
    }

    fn statement() -> impl Strategy<Value = Statement> {
        (
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(action_pattern(), 1..3),
            any::<bool>(),
            prop::collection::vec(resource_pattern(), 1..3),
            any::<bool>(),
        )
            .prop_map(
                |(allow, not_a, actions, not_r, resources, cond)| Statement {
                    id: String::new(),
                    effect: if allow { Effect::Allow } else { Effect::Deny },
                    actions: if not_a {
                        Matcher::Not(actions)
                    } else {
                        Matcher::Any(actions)
                    },
                    resources: if not_r {
                        Matcher::Not(resources)
                    } else {
                        Matcher::Any(resources)
                    },
                    has_condition: cond,
                },
            )
    }

    fn policies() -> impl Strategy<Value = Vec<Policy>> {
        prop::collection::vec(prop::collection::vec(statement(), 0..4), 0..3).prop_map(|ps| {
            ps.into_iter()
                .enumerate()
                .map(|(i, statements)| Policy {
                    name: format!("p{i}"),
                    statements,
                })
                .collect()
        })
    }

    fn request() -> impl Strategy<Value = (String, String)> {
        (
            prop_oneof![
                Just("dynamodb:PutItem".to_string()),
                Just("dynamodb:GetItem".to_string()),
                Just("dynamodb:Scan".to_string()),
                Just("s3:GetObject".to_string()),
                "[a-z]{1,3}:[A-Za-z]{1,6}",
            ],
            prop_oneof![
                Just(TEST_TABLE.to_string()),
                Just(PROD_TABLE.to_string()),
                "arn:aws:dynamodb:[a-z-]{0,4}:[0-9]{0,3}:table/[A-Za-z-]{0,6}",
            ],
        )
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference_model(ps in policies(), (action, resource) in request()) {
            prop_assert_eq!(evaluate(&ps, &action, &resource).decision, reference(&ps, &action, &resource));
        }

        #[test]
        fn statement_order_does_not_matter(ps in policies(), (action, resource) in request()) {
            let mut reversed: Vec<Policy> = ps.iter().rev().cloned().collect();
            for p in &mut reversed {
                p.statements.reverse();
            }
            prop_assert_eq!(
                evaluate(&ps, &action, &resource).decision,
                evaluate(&reversed, &action, &resource).decision
            );
        }

        #[test]
        fn a_deny_of_everything_always_wins(ps in policies(), (action, resource) in request()) {
            let mut guarded = ps.clone();
            guarded.push(Policy {
                name: "guard".into(),
                statements: vec![Statement {
                    id: "all".into(),
                    effect: Effect::Deny,
                    actions: Matcher::Any(vec!["*".into()]),
                    resources: Matcher::Any(vec!["*".into()]),
                    has_condition: false,
                }],
            });
            prop_assert_eq!(evaluate(&guarded, &action, &resource).decision, Decision::ExplicitDeny);
        }

        #[test]
        fn glob_agrees_with_the_recursive_definition(p in "[ab*?]{0,8}", t in "[ab]{0,10}") {
            prop_assert_eq!(glob(p.as_bytes(), t.as_bytes()), reference_glob(p.as_bytes(), t.as_bytes()));
        }
    }
}
