//! Reading recorded writes back: BatchGetItem in batches of at most 100
//! distinct keys (a duplicate key makes DynamoDB reject the whole call),
//! consistent reads, unprocessed keys retried with backoff and jitter.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ScalarAttributeType};

use super::records::Written;
use crate::aws::Service;
use crate::error::{AwsError, Error};

pub type Client = Service<aws_sdk_dynamodb::Client>;

pub const MAX_BATCH: usize = 100;
const PARALLEL_BATCHES: usize = 4;
const MAX_ATTEMPTS: u32 = 8;

pub type Item = HashMap<String, AttributeValue>;

/// A table's key attributes and their types, from DescribeTable.
#[derive(Debug, Clone)]
pub struct TableKeys {
    pub table: String,
    pub types: BTreeMap<String, ScalarAttributeType>,
}

#[derive(Debug, thiserror::Error)]
pub enum DynamoError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(
        "key attribute {name} of table {table} is not in the write declaration (the table's key is {expected})"
    )]
    KeyMismatch {
        table: String,
        name: String,
        expected: String,
    },
    #[error(
        "key attribute {name} of table {table} is a number, but the run recorded {value:?} for it: \
         make the step's writes key a number, or check the table"
    )]
    KeyType {
        table: String,
        name: String,
        value: String,
    },
}

impl From<DynamoError> for Error {
    fn from(e: DynamoError) -> Error {
        match e {
            DynamoError::Aws(e) => Error::AwsCall(e),
            // Keys are built from what the run recorded: the load is sent.
            key @ (DynamoError::KeyMismatch { .. } | DynamoError::KeyType { .. }) => {
                Error::Verification(key.to_string())
            }
        }
    }
}

pub async fn describe_table(client: &Client, table: &str) -> Result<TableKeys, DynamoError> {
    let resource = format!("table {table}");
    let out = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| client.error("DescribeTable", &resource, &e))?;
    let description = out
        .table
        .ok_or_else(|| client.problem("DescribeTable", &resource, "the answer has no table."))?;
    let definitions: HashMap<String, ScalarAttributeType> = description
        .attribute_definitions()
        .iter()
        .map(|d| (d.attribute_name().to_string(), d.attribute_type().clone()))
        .collect();
    let types = description
        .key_schema()
        .iter()
        .map(|k| {
            let name = k.attribute_name().to_string();
            let kind = definitions
                .get(&name)
                .cloned()
                .unwrap_or(ScalarAttributeType::S);
            (name, kind)
        })
        .collect();
    Ok(TableKeys {
        table: table.to_string(),
        types,
    })
}

/// The DynamoDB key of a record, typed by the table's schema.
pub fn key_of(written: &Written<'_>, keys: &TableKeys) -> Result<Item, DynamoError> {
    let mut item = HashMap::new();
    for (name, kind) in &keys.types {
        let value = written
            .key
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string())
            .ok_or_else(|| DynamoError::KeyMismatch {
                table: keys.table.clone(),
                name: name.clone(),
                expected: keys.types.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
        let value = match kind {
            // DynamoDB would refuse the whole batch (ValidationException):
            // name the attribute and the value instead.
            ScalarAttributeType::N if value.trim().parse::<f64>().is_err() => {
                return Err(DynamoError::KeyType {
                    table: keys.table.clone(),
                    name: name.clone(),
                    value,
                });
            }
            ScalarAttributeType::N => AttributeValue::N(value),
            ScalarAttributeType::B => {
                AttributeValue::B(aws_smithy_types::Blob::new(value.into_bytes()))
            }
            _ => AttributeValue::S(value),
        };
        item.insert(name.clone(), value);
    }
    Ok(item)
}

/// A canonical text for a key, to deduplicate and to match answers.
pub fn key_text(key: &Item) -> String {
    let mut parts: Vec<String> = key
        .iter()
        .map(|(k, v)| format!("{k}={}", scalar_text(v)))
        .collect();
    parts.sort();
    parts.join(",")
}

fn scalar_text(v: &AttributeValue) -> String {
    match v {
        AttributeValue::S(s) | AttributeValue::N(s) => s.clone(),
        AttributeValue::B(b) => String::from_utf8_lossy(b.as_ref()).into_owned(),
        other => format!("{other:?}"),
    }
}

/// Splits keys into batches of at most [`MAX_BATCH`] with no key twice in
/// any batch (nor across batches: each distinct key is read once).
pub fn batches(keys: &[Item]) -> Vec<Vec<Item>> {
    let mut seen = HashSet::new();
    let mut out: Vec<Vec<Item>> = Vec::new();
    for key in keys {
        if !seen.insert(key_text(key)) {
            continue;
        }
        match out.last_mut() {
            Some(batch) if batch.len() < MAX_BATCH => batch.push(key.clone()),
            _ => out.push(vec![key.clone()]),
        }
    }
    out
}

/// Reads the given keys; returns the items found, by key text.
pub async fn read_items(
    client: &Client,
    table: &str,
    keys: &[Item],
    calls: &std::sync::atomic::AtomicU64,
) -> Result<HashMap<String, Item>, DynamoError> {
    let mut found = HashMap::new();
    let mut pending = batches(keys).into_iter();
    let mut running = tokio::task::JoinSet::new();
    loop {
        while running.len() < PARALLEL_BATCHES {
            let Some(batch) = pending.next() else { break };
            let client = client.clone();
            let table = table.to_string();
            running.spawn(async move { read_batch(&client, &table, batch).await });
        }
        let Some(joined) = running.join_next().await else {
            break;
        };
        let (items, n_calls) = joined.map_err(|e| {
            client.problem(
                "BatchGetItem",
                &format!("table {table}"),
                &format!("a batch stopped: {e}."),
            )
        })??;
        calls.fetch_add(n_calls, std::sync::atomic::Ordering::Relaxed);
        for item in items {
            let key: Item = item
                .iter()
                .filter(|(k, _)| keys.first().is_some_and(|f| f.contains_key(*k)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            found.insert(key_text(&key), item);
        }
    }
    Ok(found)
}

async fn read_batch(
    client: &Client,
    table: &str,
    batch: Vec<Item>,
) -> Result<(Vec<Item>, u64), DynamoError> {
    let resource = format!("table {table}");
    let err = |what: String| client.problem("BatchGetItem", &resource, &what);
    let mut items = Vec::new();
    let mut keys = batch;
    let mut calls = 0;
    for attempt in 0..MAX_ATTEMPTS {
        if keys.is_empty() {
            break;
        }
        if attempt > 0 {
            // Exponential backoff with full jitter, as AWS recommends for UnprocessedKeys.
            let cap = 50u64 << attempt.min(6);
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=cap))).await;
        }
        let request = KeysAndAttributes::builder()
            .set_keys(Some(keys.clone()))
            .consistent_read(true)
            .build()
            .map_err(|e| err(format!("cannot build the request: {e}.")))?;
        calls += 1;
        let out = client
            .batch_get_item()
            .request_items(table, request)
            .send()
            .await
            .map_err(|e| client.error("BatchGetItem", &resource, &e))?;
        if let Some(mut responses) = out.responses
            && let Some(got) = responses.remove(table)
        {
            items.extend(got);
        }
        keys = out
            .unprocessed_keys
            .and_then(|mut u| u.remove(table))
            .map(|k| k.keys)
            .unwrap_or_default();
    }
    if !keys.is_empty() {
        return Err(err(format!(
            "{} keys still unprocessed after {MAX_ATTEMPTS} attempts. The table is throttling \
             reads: run the verification again later.",
            keys.len()
        ))
        .into());
    }
    Ok((items, calls))
}

/// Why an item does not hold what the write declared, if it does not.
pub fn mismatch(item: &Item, expected: &[(&str, serde_json::Value)]) -> Option<String> {
    for (name, want) in expected {
        match item.get(*name) {
            None => return Some(format!("{name} is missing")),
            Some(got) if !same(got, want) => {
                return Some(format!("{name} is {} not {want}", show(got)));
            }
            Some(_) => {}
        }
    }
    None
}

fn same(got: &AttributeValue, want: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (got, want) {
        (AttributeValue::S(s), J::String(w)) => s == w,
        (AttributeValue::N(n), J::Number(w)) => n.parse::<f64>().ok() == w.as_f64(),
        (AttributeValue::N(n), J::String(w)) => {
            n == w
                || n.parse::<f64>()
                    .ok()
                    .is_some_and(|a| w.parse::<f64>().ok() == Some(a))
        }
        (AttributeValue::S(s), J::Number(w)) => s == &w.to_string(),
        (AttributeValue::Bool(b), J::Bool(w)) => b == w,
        (AttributeValue::Null(_), J::Null) => true,
        (AttributeValue::L(items), J::Array(w)) => {
            items.len() == w.len() && items.iter().zip(w).all(|(a, b)| same(a, b))
        }
        (AttributeValue::M(map), J::Object(w)) => {
            map.len() == w.len()
                && w.iter()
                    .all(|(k, v)| map.get(k).is_some_and(|a| same(a, v)))
        }
        _ => false,
    }
}

fn show(v: &AttributeValue) -> String {
    match v {
        AttributeValue::S(s) => format!("{s:?}"),
        AttributeValue::N(n) => n.clone(),
        AttributeValue::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(id: u32) -> Item {
        HashMap::from([("Id".to_string(), AttributeValue::S(format!("k{id}")))])
    }

    proptest! {
        #[test]
        fn batches_never_hold_a_duplicate_and_cover_every_key(ids in proptest::collection::vec(0u32..400, 0..1200)) {
            let keys: Vec<Item> = ids.iter().map(|i| key(*i)).collect();
            let out = batches(&keys);
            let mut all = HashSet::new();
            for batch in &out {
                prop_assert!(!batch.is_empty() && batch.len() <= MAX_BATCH);
                let distinct: HashSet<String> = batch.iter().map(key_text).collect();
                prop_assert_eq!(distinct.len(), batch.len(), "duplicate key in one batch");
                for k in distinct {
                    prop_assert!(all.insert(k), "a key read twice");
                }
            }
            let wanted: HashSet<String> = keys.iter().map(key_text).collect();
            prop_assert_eq!(all, wanted);
            prop_assert_eq!(out.len(), ids.iter().collect::<HashSet<_>>().len().div_ceil(MAX_BATCH));
        }
    }

    #[test]
    fn attribute_comparison_follows_dynamodb_types() {
        let item: Item = HashMap::from([
            ("Name".into(), AttributeValue::S("a".into())),
            ("Age".into(), AttributeValue::N("42".into())),
        ]);
        assert_eq!(
            mismatch(
                &item,
                &[
                    ("Name", serde_json::json!("a")),
                    ("Age", serde_json::json!(42))
                ]
            ),
            None
        );
        assert_eq!(mismatch(&item, &[("Age", serde_json::json!("42"))]), None);
        assert!(mismatch(&item, &[("Name", serde_json::json!("b"))]).is_some());
        assert!(
            mismatch(&item, &[("Email", serde_json::json!("x"))])
                .unwrap()
                .contains("missing")
        );
    }
}
