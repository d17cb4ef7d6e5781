//! The routes a stage serves, read from GetExport (OpenAPI 3.0 or Swagger 2.0
//! with `x-amazon-apigateway-integration`): what its deployment holds, not
//! the draft.

use serde_json::Value;

/// One method of one resource, and the integration behind it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Route {
    /// `GET`, `POST`, … or `ANY`.
    pub method: String,
    /// The resource as defined: `/user/{id}`.
    pub path: String,
    /// `aws_proxy`, `aws`, `http_proxy`, `mock`, … as API Gateway writes it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration_type: Option<String>,
    /// The integration URI as written, stage variables unresolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

impl Route {
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// What an export holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub routes: Vec<Route>,
    /// Whether any method carries an `x-amazon-apigateway-integration`
    /// (moto's and LocalStack's exports carry none).
    pub has_integrations: bool,
}

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];

/// Reads an exported document; `None` when it is neither OpenAPI nor Swagger.
pub fn parse(doc: &Value) -> Option<Exported> {
    if doc.get("openapi").is_none() && doc.get("swagger").is_none() {
        return None;
    }
    let mut routes = Vec::new();
    let mut has_integrations = false;
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return Some(Exported {
            routes,
            has_integrations,
        });
    };
    for (path, item) in paths {
        let Some(item) = item.as_object() else {
            continue;
        };
        for (key, operation) in item {
            let method = if key == "x-amazon-apigateway-any-method" {
                "ANY".to_string()
            } else if METHODS.contains(&key.as_str()) {
                key.to_ascii_uppercase()
            } else {
                continue;
            };
            let integration = operation.get("x-amazon-apigateway-integration");
            has_integrations |= integration.is_some();
            let text = |name: &str| {
                integration
                    .and_then(|i| i.get(name))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            routes.push(Route {
                method,
                path: path.clone(),
                integration_type: text("type").map(|t| t.to_ascii_lowercase()),
                uri: text("uri"),
            });
        }
    }
    routes.sort_by(|a, b| (&a.path, &a.method).cmp(&(&b.path, &b.method)));
    Some(Exported {
        routes,
        has_integrations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_oas30_and_swagger_alike() {
        let paths = json!({
            "/user": { "post": { "x-amazon-apigateway-integration": { "type": "AWS_PROXY", "uri": "arn:a" } },
                       "parameters": [] },
            "/user/{id}": { "x-amazon-apigateway-any-method": { "x-amazon-apigateway-integration": { "type": "aws_proxy", "uri": "arn:b" } } }
        });
        for doc in [
            json!({"openapi": "3.0.1", "paths": paths}),
            json!({"swagger": "2.0", "paths": paths}),
        ] {
            let e = parse(&doc).unwrap();
            assert!(e.has_integrations);
            assert_eq!(e.routes.len(), 2);
            assert_eq!(e.routes[0].label(), "POST /user");
            assert_eq!(e.routes[0].integration_type.as_deref(), Some("aws_proxy"));
            assert_eq!(e.routes[1].label(), "ANY /user/{id}");
            assert_eq!(e.routes[1].uri.as_deref(), Some("arn:b"));
        }
    }

    #[test]
    fn an_export_without_integrations_says_so() {
        let e = parse(&json!({"openapi": "3.0.1", "paths": {"/user": {"get": {"responses": {}}}}}))
            .unwrap();
        assert!(!e.has_integrations);
        assert_eq!(e.routes[0].uri, None);
        assert_eq!(parse(&json!({"message": "no"})), None);
    }
}
