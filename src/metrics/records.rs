//! What verification needs from the traffic: the writes that were answered
//! with success and the invocations' correlation markers. Workers hand them
//! over once a second; the coordinator keeps them in bounded reservoirs.

/// One write the stage acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRecord {
    pub step: usize,
    /// Key attribute names and values as rendered (typed against the table's
    /// key schema at verification).
    pub key: Vec<(String, String)>,
    pub attributes: Vec<(String, serde_json::Value)>,
    pub correlation_id: Option<String>,
    pub request_id: Option<String>,
}

impl WriteRecord {
    pub fn key_text(&self) -> String {
        self.key
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One request that should have invoked the stage's function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocationRecord {
    pub step: usize,
    pub correlation_id: Option<String>,
    /// API Gateway's `x-amzn-RequestId`, what Powertools logs as `correlation_id`.
    pub request_id: Option<String>,
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

    proptest! {
        #[test]
        fn never_exceeds_its_cap(cap in 1usize..50, n in 0u64..500) {
            let mut r = Reservoir::new(cap);
            for i in 0..n { r.offer(i); }
            prop_assert_eq!(r.seen(), n);
            prop_assert_eq!(r.len(), (n as usize).min(cap));
        }
    }
}
