//! What verification needs from the traffic: the writes that were answered
//! with success and the invocations' correlation markers. Workers hand them
//! over once a second; the coordinator keeps them in bounded reservoirs.

use std::borrow::Cow;
use std::fmt;

use crate::scenario::jsonpath::text_of;
use crate::scenario::template::Template;
use crate::scenario::{Expected, Writes};

/// One write the stage acknowledged, compact: up to 100 000 of them are held
/// for the whole run, so the declared names and constant values stay in the
/// plan and only what was rendered for this request is kept, in one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRecord {
    pub step: u32,
    /// The iteration's global sequence number; with the step and the run id
    /// it gives the request's correlation id (`Plan::correlation_id`).
    pub seq: u64,
    pub request_id: RequestId,
    rendered: PackedTexts,
}

/// A recorded write read back against its step's declaration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Written<'a> {
    /// Key attribute names and values as rendered (typed against the table's
    /// key schema at verification).
    pub key: Vec<(&'a str, Cow<'a, str>)>,
    pub attributes: Vec<(&'a str, serde_json::Value)>,
}

impl WriteRecord {
    /// Keeps the rendered text of every templated key and attribute of
    /// `writes`, in declaration order; `render` is called once for each.
    pub fn new(
        step: u32,
        seq: u64,
        request_id: RequestId,
        writes: &Writes,
        mut render: impl FnMut(&Template) -> String,
    ) -> WriteRecord {
        let mut packed = PackedTexts::builder();
        for (_, expected) in writes.key.iter().chain(&writes.attributes) {
            if let Expected::Text(template) = expected {
                packed.push(&render(template));
            }
        }
        WriteRecord {
            step,
            seq,
            request_id,
            rendered: packed.finish(),
        }
    }

    /// The record with names and constants from `writes`, the declaration it
    /// was recorded from.
    pub fn read<'a>(&'a self, writes: &'a Writes) -> Written<'a> {
        let mut texts = self.rendered.iter();
        let mut key = Vec::with_capacity(writes.key.len());
        for (name, expected) in &writes.key {
            let value = match expected {
                Expected::Text(_) => Cow::Borrowed(texts.next().unwrap_or_default()),
                Expected::Value(constant) => text_of(constant),
            };
            key.push((name.as_str(), value));
        }
        let mut attributes = Vec::with_capacity(writes.attributes.len());
        for (name, expected) in &writes.attributes {
            let value = match expected {
                Expected::Text(_) => {
                    serde_json::Value::String(texts.next().unwrap_or_default().to_string())
                }
                Expected::Value(v) => v.clone(),
            };
            attributes.push((name.as_str(), value));
        }
        Written { key, attributes }
    }
}

/// Strings packed in one boxed slice, each led by its length as a u32.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct PackedTexts(Box<[u8]>);

struct PackedBuilder(Vec<u8>);

impl PackedTexts {
    fn builder() -> PackedBuilder {
        PackedBuilder(Vec::new())
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        let mut rest: &[u8] = &self.0;
        std::iter::from_fn(move || {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
            let (text, tail) = tail.split_at_checked(len)?;
            rest = tail;
            // Only whole `&str`s are ever pushed, so this never fails.
            Some(std::str::from_utf8(text).unwrap_or_default())
        })
    }
}

impl PackedBuilder {
    fn push(&mut self, text: &str) {
        // A rendered value over 4 GiB cannot come from a scenario; clip rather than fail.
        let len = u32::try_from(text.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_le_bytes());
        self.0.extend_from_slice(&text.as_bytes()[..len as usize]);
    }

    fn finish(self) -> PackedTexts {
        PackedTexts(self.0.into_boxed_slice())
    }
}

/// API Gateway's `x-amzn-RequestId`, what Powertools logs as `correlation_id`.
/// It is a lowercase UUID, kept in 16 bytes; anything else is kept as text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum RequestId {
    #[default]
    Absent,
    Uuid(uuid::Uuid),
    Text(Box<str>),
}

impl RequestId {
    pub fn parse(header: Option<&str>) -> RequestId {
        let Some(text) = header else {
            return RequestId::Absent;
        };
        let mut buffer = uuid::Uuid::encode_buffer();
        match uuid::Uuid::try_parse(text) {
            // Only when it prints back exactly as it came (case, hyphens).
            Ok(id) if id.hyphenated().encode_lower(&mut buffer) == text => RequestId::Uuid(id),
            _ => RequestId::Text(text.into()),
        }
    }

    pub fn text(&self) -> Option<String> {
        match self {
            RequestId::Absent => None,
            other => Some(other.to_string()),
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Absent => Ok(()),
            RequestId::Uuid(id) => id.hyphenated().fmt(f),
            RequestId::Text(text) => f.write_str(text),
        }
    }
}

/// One request that should have invoked the stage's function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationRecord {
    pub step: u32,
    /// The request's service time (from the actual send to the answer), in
    /// µs, saturated at u32: what API Gateway's log splits into its own
    /// part and the integration's. Not the latency from the intended start,
    /// whose client-side wait API Gateway never saw.
    pub service_us: u32,
    /// As [`WriteRecord::seq`].
    pub seq: u64,
    pub request_id: RequestId,
    /// Sent in the warmup: proven like the others, its time split kept apart.
    pub warmup: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Records {
    pub writes: Vec<WriteRecord>,
    pub invocations: Vec<InvocationRecord>,
}

/// A uniform sample of at most `cap` items from a stream of unknown length
/// (Vitter's algorithm R): every item seen has the same chance to be kept.
#[derive(Debug, Clone)]
pub struct Reservoir<T> {
    cap: usize,
    seen: u64,
    items: Vec<T>,
}

impl<T> Reservoir<T> {
    pub fn new(cap: usize) -> Reservoir<T> {
        Reservoir {
            cap,
            seen: 0,
            items: Vec::new(),
        }
    }

    pub fn offer(&mut self, item: T) {
        self.seen += 1;
        if self.items.len() < self.cap {
            self.items.push(item);
        } else {
            let j = fastrand::u64(..self.seen);
            if let Some(slot) = usize::try_from(j).ok().and_then(|j| self.items.get_mut(j)) {
                *slot = item;
            }
        }
    }

    /// Items offered in total.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn into_items(self) -> Vec<T> {
        self.items
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_everything_under_the_cap_and_samples_uniformly_past_it() {
        let mut r = Reservoir::new(10);
        (0..7).for_each(|i| r.offer(i));
        assert_eq!(r.clone().into_items(), (0..7).collect::<Vec<_>>());
        // Over many trials each of 100 items is kept about 10 % of the time.
        let mut kept = vec![0u32; 100];
        for _ in 0..2000 {
            let mut r = Reservoir::new(10);
            (0..100).for_each(|i| r.offer(i));
            for i in r.into_items() {
                kept[i] += 1;
            }
        }
        assert!(kept.iter().all(|k| (120..=290).contains(k)), "{kept:?}");
    }

    fn writes(key: &[(&str, &str)], attributes: &[(&str, &str)]) -> Writes {
        let expected = |v: &str| match serde_json::from_str::<serde_json::Value>(v) {
            Ok(value) if !value.is_string() => Expected::Value(value),
            _ => Expected::Text(Template::literal(v)),
        };
        Writes {
            key: key
                .iter()
                .map(|(n, v)| (n.to_string(), expected(v)))
                .collect(),
            attributes: attributes
                .iter()
                .map(|(n, v)| (n.to_string(), expected(v)))
                .collect(),
        }
    }

    #[test]
    fn a_write_reads_back_with_names_and_constants_from_its_declaration() {
        let shape = writes(
            &[("Id", "{{uuid}}"), ("Version", "3")],
            &[("Name", "user-{{seq}}"), ("Active", "true"), ("Empty", "")],
        );
        let mut rendered = ["0d6b7c9e", "user-7", ""].into_iter();
        let record = WriteRecord::new(1, 7, RequestId::Absent, &shape, |_| {
            rendered.next().unwrap_or_default().to_string()
        });
        let read = record.read(&shape);
        assert_eq!(
            read.key,
            vec![
                ("Id", Cow::Borrowed("0d6b7c9e")),
                ("Version", Cow::Borrowed("3"))
            ]
        );
        assert_eq!(
            read.attributes,
            vec![
                ("Name", serde_json::json!("user-7")),
                ("Active", serde_json::json!(true)),
                ("Empty", serde_json::json!("")),
            ]
        );
    }

    #[test]
    fn request_ids_print_back_exactly() {
        for text in [
            "c0ffee00-1234-4abc-8def-0123456789ab",
            "C0FFEE00-1234-4ABC-8DEF-0123456789AB",
            "c0ffee0012344abc8def0123456789ab",
            "not-a-uuid",
        ] {
            assert_eq!(RequestId::parse(Some(text)).text().as_deref(), Some(text));
        }
        assert!(matches!(
            RequestId::parse(Some("c0ffee00-1234-4abc-8def-0123456789ab")),
            RequestId::Uuid(_)
        ));
        assert_eq!(RequestId::parse(None).text(), None);
    }

    proptest! {
        #[test]
        fn packed_texts_round_trip(texts in proptest::collection::vec(".{0,40}", 0..8)) {
            let mut packed = PackedTexts::builder();
            texts.iter().for_each(|t| packed.push(t));
            let packed = packed.finish();
            prop_assert_eq!(packed.iter().collect::<Vec<_>>(), texts.iter().map(String::as_str).collect::<Vec<_>>());
        }

        #[test]
        fn never_exceeds_its_cap(cap in 1usize..50, n in 0u64..500) {
            let mut r = Reservoir::new(cap);
            for i in 0..n { r.offer(i); }
            prop_assert_eq!(r.seen(), n);
            prop_assert_eq!(r.len(), (n as usize).min(cap));
        }
    }
}
