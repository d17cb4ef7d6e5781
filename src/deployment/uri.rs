//! Integration URIs as API Gateway resolves them: `${stageVariables.NAME}`
//! replaced by the stage's variable (an unset one becomes empty text, as API
//! Gateway does, and is reported), and the Lambda function a resolved URI
//! names, with its alias or version.

use std::collections::BTreeMap;

/// A URI with the stage's variables substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub uri: String,
    /// Variables the URI names that the stage does not set, in order, once each.
    pub unset: Vec<String>,
}

/// Replaces every `${stageVariables.NAME}` by the stage's value. API Gateway
/// substitutes an unset variable with nothing, which is how a missing `env`
/// turns `${stageVariables.env}user-service` into `user-service` — Prod's.
pub fn substitute(template: &str, variables: &BTreeMap<String, String>) -> Resolved {
    const OPEN: &str = "${stageVariables.";
    let mut uri = String::with_capacity(template.len());
    let mut unset = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find(OPEN) {
        let after = &rest[at + OPEN.len()..];
        let Some(close) = after.find('}') else {
            break;
        };
        let name = &after[..close];
        // A name AWS allows: letters, digits, underscores. Anything else is
        // text, left as written.
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            uri.push_str(&rest[..at + OPEN.len()]);
            rest = after;
            continue;
        }
        uri.push_str(&rest[..at]);
        match variables.get(name) {
            Some(value) => uri.push_str(value),
            None => {
                if !unset.iter().any(|u| u == name) {
                    unset.push(name.to_string());
                }
            }
        }
        rest = &after[close + 1..];
    }
    uri.push_str(rest);
    Resolved { uri, unset }
}

/// The function a Lambda integration invokes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FunctionRef {
    /// The ARN as the URI names it, qualifier included.
    pub arn: String,
    pub region: String,
    pub account: String,
    pub name: String,
    /// An alias or a version (`live`, `7`), if the URI names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
}

impl FunctionRef {
    /// The name to give Lambda's GetFunction: `name` or `name:qualifier`.
    pub fn lookup_name(&self) -> String {
        match &self.qualifier {
            Some(q) => format!("{}:{q}", self.name),
            None => self.name.clone(),
        }
    }
}

/// The function of a Lambda integration URI
/// (`arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/{function ARN}/invocations`),
/// or `None` for any other integration.
pub fn lambda_function(uri: &str) -> Option<FunctionRef> {
    let (_, after) = uri.split_once(":lambda:path/")?;
    let (_, after) = after.split_once("/functions/")?;
    let arn = after.strip_suffix("/invocations")?;
    let parts: Vec<&str> = arn.split(':').collect();
    // arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
    if parts.len() < 7 || parts[0] != "arn" || parts[2] != "lambda" || parts[5] != "function" {
        return None;
    }
    let qualifier = parts.get(7).map(|q| q.to_string());
    if parts.len() > 8 {
        return None;
    }
    Some(FunctionRef {
        arn: arn.to_string(),
        region: parts[3].to_string(),
        account: parts[4].to_string(),
        name: parts[6].to_string(),
        qualifier,
    })
}

/// The ARN API Gateway presents to Lambda as `AWS:SourceArn` when `stage`
/// invokes the route: the method the client used and the resource as defined.
pub fn source_arn(
    region: &str,
    account: &str,
    api: &str,
    stage: &str,
    method: &str,
    path: &str,
) -> String {
    format!("arn:aws:execute-api:{region}:{account}:{api}/{stage}/{method}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const SEED: &str = "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:${stageVariables.env}user-service/invocations";

    #[test]
    fn the_seeds_uri_resolves_per_stage() {
        let test = substitute(SEED, &vars(&[("env", "test-")]));
        assert!(test.unset.is_empty());
        let f = lambda_function(&test.uri).unwrap();
        assert_eq!(f.name, "test-user-service");
        assert_eq!(f.account, "123456789012");
        assert_eq!(f.qualifier, None);

        let unset = substitute(SEED, &BTreeMap::new());
        assert_eq!(unset.unset, vec!["env".to_string()]);
        assert_eq!(lambda_function(&unset.uri).unwrap().name, "user-service");
    }

    #[test]
    fn aliases_and_versions_are_qualifiers() {
        let uri = "arn:aws:apigateway:eu-west-1:lambda:path/2015-03-31/functions/arn:aws:lambda:eu-west-1:1:function:svc:${stageVariables.alias}/invocations";
        let f = lambda_function(&substitute(uri, &vars(&[("alias", "live")])).uri).unwrap();
        assert_eq!(f.qualifier.as_deref(), Some("live"));
        assert_eq!(f.lookup_name(), "svc:live");
        assert_eq!(f.region, "eu-west-1");
    }

    #[test]
    fn other_integrations_name_no_function() {
        assert_eq!(lambda_function("https://example.com/x"), None);
        assert_eq!(
            lambda_function("arn:aws:apigateway:us-east-1:dynamodb:action/PutItem"),
            None
        );
        assert_eq!(
            lambda_function(
                "arn:aws:apigateway:r:lambda:path/2015-03-31/functions/arn:aws:lambda:r:1:layer:x/invocations"
            ),
            None
        );
    }

    #[test]
    fn text_that_is_not_a_variable_stays() {
        let r = substitute(
            "a${stageVariables.}b${stageVariables.x-y}c${x}",
            &BTreeMap::new(),
        );
        assert_eq!(r.uri, "a${stageVariables.}b${stageVariables.x-y}c${x}");
        assert!(r.unset.is_empty());
        let open = substitute("a${stageVariables.env", &vars(&[("env", "x")]));
        assert_eq!(open.uri, "a${stageVariables.env");
    }

    proptest! {
        /// Substitution is what a reference model of it gives: each
        /// placeholder replaced by its value or nothing, the rest untouched.
        #[test]
        fn substitution_matches_a_model(
            parts in proptest::collection::vec(
                prop_oneof![
                    "[a-z:/.-]{0,8}".prop_map(|t| (t, None)),
                    "[a-z]{1,3}".prop_map(|n| (String::new(), Some(n))),
                ],
                0..8
            ),
            set in proptest::collection::btree_map("[a-z]{1,3}", "[a-z0-9-]{0,5}", 0..4),
        ) {
            let mut template = String::new();
            let mut expected = String::new();
            let mut unset: Vec<String> = Vec::new();
            for (text, name) in &parts {
                template.push_str(text);
                expected.push_str(text);
                if let Some(name) = name {
                    template.push_str(&format!("${{stageVariables.{name}}}"));
                    match set.get(name) {
                        Some(v) => expected.push_str(v),
                        None if !unset.contains(name) => unset.push(name.clone()),
                        None => {}
                    }
                }
            }
            let r = substitute(&template, &set);
            prop_assert_eq!(r.uri, expected);
            prop_assert_eq!(r.unset, unset);
        }

        /// Any function name and qualifier read back from the URI they make.
        #[test]
        fn function_arns_read_back(
            name in "[A-Za-z0-9_-]{1,20}",
            qualifier in proptest::option::of("[A-Za-z0-9_$]{1,8}"),
        ) {
            let arn = match &qualifier {
                Some(q) => format!("arn:aws:lambda:us-east-1:123456789012:function:{name}:{q}"),
                None => format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
            };
            let uri = format!("arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations");
            let f = lambda_function(&uri).unwrap();
            prop_assert_eq!(f.arn, arn);
            prop_assert_eq!(f.name, name);
            prop_assert_eq!(f.qualifier, qualifier);
        }
    }
}
