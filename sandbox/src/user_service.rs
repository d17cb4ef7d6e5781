//! The user-service function's code: CRUD on the table its environment names,
//! or, with `--no-backend`, an echo that touches nothing. It answers as a
//! Lambda proxy function would: a status code and a JSON body. Every DynamoDB
//! call is first judged against the function's execution role, as IAM judges
//! the credentials Lambda gives the function: a call the role does not allow
//! fails with DynamoDB's AccessDeniedException, unhandled, as the seed's
//! function lets it fail.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use http::Method;
use serde_json::{Map, Value, json};

use super::policy::ExecutionRole;
use super::routing::Resource;

pub enum UserService {
    DynamoDb(aws_sdk_dynamodb::Client),
    Echo,
}

/// One invocation, as the proxy event would carry it.
pub struct Call<'a> {
    pub method: &'a Method,
    pub resource: Resource,
    /// `pathParameters.id`, already percent-decoded.
    pub id: Option<&'a str>,
    pub body: &'a [u8],
    pub table: &'a str,
    /// `arn:aws:dynamodb:{region}:{account}:table/{table}`, what the role is judged on.
    pub table_arn: &'a str,
    /// The credentials the function runs with.
    pub role: &'a ExecutionRole,
    /// The drop-writes fault: answer as if written, write nothing.
    pub skip_write: bool,
}

/// What the function returned, and what it logs about it.
pub struct Outcome {
    pub status: u16,
    pub body: Option<Value>,
    pub operation: &'static str,
    pub message: String,
    pub user_id: Option<String>,
    /// An unhandled error: API Gateway turns it into 502.
    pub crashed: bool,
}

impl Outcome {
    fn answer(status: u16, body: Value, operation: &'static str, message: &str) -> Outcome {
        Outcome {
            status,
            body: Some(body),
            operation,
            message: message.to_string(),
            user_id: None,
            crashed: false,
        }
    }

    fn with_id(mut self, id: &str) -> Outcome {
        self.user_id = Some(id.to_string());
        self
    }

    fn bad_request(operation: &'static str, message: &str) -> Outcome {
        Outcome::answer(400, json!({ "message": message }), operation, message)
    }

    fn crashed(operation: &'static str, message: String) -> Outcome {
        Outcome {
            status: 502,
            body: Some(json!({ "message": "Internal server error" })),
            operation,
            message,
            user_id: None,
            crashed: true,
        }
    }
}

impl UserService {
    pub fn dynamodb(client: aws_sdk_dynamodb::Client) -> UserService {
        UserService::DynamoDb(client)
    }

    pub fn echo() -> UserService {
        UserService::Echo
    }

    pub async fn handle(&self, call: Call<'_>) -> Outcome {
        match (call.resource, call.method.as_str(), call.id) {
            (Resource::Users, "POST", _) => self.create(&call).await,
            (Resource::Users, "GET", _) => self.list(&call).await,
            (Resource::User, "GET", Some(id)) => self.get(&call, id).await,
            (Resource::User, "PUT", Some(id)) => self.update(&call, id).await,
            (Resource::User, "DELETE", Some(id)) => self.delete(&call, id).await,
            _ => Outcome::answer(
                405,
                json!({ "message": "Method Not Allowed" }),
                "Unsupported",
                "method not allowed on this resource",
            ),
        }
    }

    async fn create(&self, call: &Call<'_>) -> Outcome {
        const OP: &str = "CreateUser";
        let mut user = match parse_user(call.body) {
            Ok(u) => u,
            Err(m) => return Outcome::bad_request(OP, &m),
        };
        let id = match user.get("Id") {
            None | Some(Value::Null) => uuid::Uuid::new_v4().to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Outcome::bad_request(OP, "Id must be a non-empty string"),
        };
        user.insert("Id".into(), Value::String(id.clone()));
        if let Err(e) = self.put(call, &user).await {
            return Outcome::crashed(OP, e).with_id(&id);
        }
        Outcome::answer(201, Value::Object(user), OP, "user created").with_id(&id)
    }

    async fn update(&self, call: &Call<'_>, id: &str) -> Outcome {
        const OP: &str = "UpdateUser";
        let mut user = match parse_user(call.body) {
            Ok(u) => u,
            Err(m) => return Outcome::bad_request(OP, &m),
        };
        // The path names the user; an Id in the body cannot move it.
        user.insert("Id".into(), Value::String(id.to_string()));
        if let Err(e) = self.put(call, &user).await {
            return Outcome::crashed(OP, e).with_id(id);
        }
        Outcome::answer(200, Value::Object(user), OP, "user updated").with_id(id)
    }

    async fn put(&self, call: &Call<'_>, user: &Map<String, Value>) -> Result<(), String> {
        let UserService::DynamoDb(db) = self else {
            return Ok(());
        };
        if call.skip_write {
            return Ok(());
        }
        authorize(call, "PutItem")?;
        let item: HashMap<String, AttributeValue> = user
            .iter()
            .map(|(k, v)| (k.clone(), to_attribute(v)))
            .collect();
        db.put_item()
            .table_name(call.table)
            .set_item(Some(item))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("PutItem {}: {}", call.table, super::aws::causes(&e)))
    }

    async fn get(&self, call: &Call<'_>, id: &str) -> Outcome {
        const OP: &str = "GetUser";
        let UserService::DynamoDb(db) = self else {
            return Outcome::answer(200, json!({ "Id": id }), OP, "user found").with_id(id);
        };
        if let Err(e) = authorize(call, "GetItem") {
            return Outcome::crashed(OP, e).with_id(id);
        }
        match db
            .get_item()
            .table_name(call.table)
            .key("Id", AttributeValue::S(id.to_string()))
            .consistent_read(true)
            .send()
            .await
        {
            Ok(out) => match out.item() {
                Some(item) => Outcome::answer(200, from_item(item), OP, "user found").with_id(id),
                None => Outcome::answer(
                    404,
                    json!({ "message": "User not found" }),
                    OP,
                    "user not found",
                )
                .with_id(id),
            },
            Err(e) => Outcome::crashed(
                OP,
                format!("GetItem {}: {}", call.table, super::aws::causes(&e)),
            )
            .with_id(id),
        }
    }

    async fn list(&self, call: &Call<'_>) -> Outcome {
        const OP: &str = "ListUsers";
        let UserService::DynamoDb(db) = self else {
            return Outcome::answer(200, json!([]), OP, "users listed");
        };
        if let Err(e) = authorize(call, "Scan") {
            return Outcome::crashed(OP, e);
        }
        // Bounded: a load test must not turn every GET into a full table scan.
        match db.scan().table_name(call.table).limit(100).send().await {
            Ok(out) => {
                let items: Vec<Value> = out.items().iter().map(from_item).collect();
                Outcome::answer(200, Value::Array(items), OP, "users listed")
            }
            Err(e) => Outcome::crashed(
                OP,
                format!("Scan {}: {}", call.table, super::aws::causes(&e)),
            ),
        }
    }

    async fn delete(&self, call: &Call<'_>, id: &str) -> Outcome {
        const OP: &str = "DeleteUser";
        if let UserService::DynamoDb(_) = self
            && !call.skip_write
            && let Err(e) = authorize(call, "DeleteItem")
        {
            return Outcome::crashed(OP, e).with_id(id);
        }
        if let UserService::DynamoDb(db) = self
            && !call.skip_write
            && let Err(e) = db
                .delete_item()
                .table_name(call.table)
                .key("Id", AttributeValue::S(id.to_string()))
                .send()
                .await
        {
            return Outcome::crashed(
                OP,
                format!("DeleteItem {}: {}", call.table, super::aws::causes(&e)),
            )
            .with_id(id);
        }
        Outcome {
            status: 204,
            body: None,
            operation: OP,
            message: "user deleted".into(),
            user_id: Some(id.to_string()),
            crashed: false,
        }
    }
}

/// The role's verdict on `dynamodb:{operation}` on the call's table, as the
/// error the function's code sees (and logs) when denied.
fn authorize(call: &Call<'_>, operation: &str) -> Result<(), String> {
    call.role
        .authorize(&format!("dynamodb:{operation}"), call.table_arn)
        .map_err(|message| {
            format!(
                "{operation} {}: AccessDeniedException: {message}",
                call.table
            )
        })
}

fn parse_user(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the body must be a JSON object".into()),
        Err(e) => Err(format!("malformed JSON body: {e}")),
    }
}

pub fn to_attribute(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_attribute).collect()),
        Value::Object(o) => AttributeValue::M(
            o.iter()
                .map(|(k, v)| (k.clone(), to_attribute(v)))
                .collect(),
        ),
    }
}

pub fn from_item(item: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), from_attribute(v)))
            .collect(),
    )
}

fn number(n: &str) -> Value {
    if let Ok(i) = n.parse::<i64>() {
        return Value::from(i);
    }
    if let Ok(u) = n.parse::<u64>() {
        return Value::from(u);
    }
    match n.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
        Some(f) => Value::Number(f),
        // Past f64's range: keep the digits rather than lose them.
        None => Value::String(n.to_string()),
    }
}

pub fn from_attribute(a: &AttributeValue) -> Value {
    use base64::Engine;
    let b64 = |b: &[u8]| Value::String(base64::engine::general_purpose::STANDARD.encode(b));
    match a {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => number(n),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(l) => Value::Array(l.iter().map(from_attribute).collect()),
        AttributeValue::M(m) => from_item(m),
        AttributeValue::Ss(ss) => Value::Array(ss.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(ns) => Value::Array(ns.iter().map(|n| number(n)).collect()),
        AttributeValue::B(b) => b64(b.as_ref()),
        AttributeValue::Bs(bs) => Value::Array(bs.iter().map(|b| b64(b.as_ref())).collect()),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_through_attribute_values() {
        let v = json!({
            "Id": "a", "age": 42, "score": 1.5, "admin": false, "none": null,
            "tags": ["x", 1], "address": {"city": "Lyon", "zip": {"code": 69000}}
        });
        let Value::Object(map) = &v else { panic!() };
        let item: HashMap<String, AttributeValue> = map
            .iter()
            .map(|(k, v)| (k.clone(), to_attribute(v)))
            .collect();
        assert_eq!(from_item(&item), v);
    }

    #[test]
    fn rejects_non_objects() {
        assert!(parse_user(b"[1]").is_err());
        assert!(parse_user(b"{").is_err());
        assert!(parse_user(b"{\"a\":1}").is_ok());
    }
}
