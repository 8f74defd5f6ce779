//! Record filters applied before processing (Lambda's `FilterCriteria`): a predicate decides which records reach
//! the processor; the others count as processed for checkpointing. [`JsonFilter`] covers the common case of
//! matching fields of JSON payloads.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::types::Record;

/// Decides which records are processed: `true` keeps a record, `false` drops it (it counts as processed and the
/// checkpoint moves past it). Built from a closure or a [`JsonFilter`].
#[derive(Clone)]
pub struct RecordFilter(Arc<dyn Fn(&Record) -> bool + Send + Sync>);

impl RecordFilter {
    /// A filter from a predicate (`true` = process the record).
    pub fn new(predicate: impl Fn(&Record) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(predicate))
    }

    /// Whether `record` is to be processed.
    pub fn keeps(&self, record: &Record) -> bool {
        (self.0)(record)
    }
}

impl fmt::Debug for RecordFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecordFilter(..)")
    }
}

impl From<JsonFilter> for RecordFilter {
    fn from(filter: JsonFilter) -> Self {
        Self::new(move |record| filter.matches(&record.data))
    }
}

/// One condition on a JSON field, addressed by a path of object keys (`["eventData", "temp"]`).
#[derive(Clone, Debug)]
enum Condition {
    Exists(Vec<String>),
    Equals(Vec<String>, Value),
    OneOf(Vec<String>, Vec<Value>),
    NumberRange(Vec<String>, Option<f64>, Option<f64>),
}

/// Matches JSON payloads: a record is kept when it is a JSON object meeting **every** condition. Payloads that are
/// not JSON objects are dropped, as Lambda's filter does, unless [`keep_non_json`](Self::keep_non_json) is set (for
/// example to let malformed payloads reach the processor and the failure destination).
///
/// ```
/// use kcl_core::process::{JsonFilter, RecordFilter};
/// // IoT readings: drop those without a temperature, keep only device types we handle.
/// let filter: RecordFilter = JsonFilter::new()
///     .exists("temp")
///     .one_of("type", ["sensor", "gateway"])
///     .into();
/// # let _ = filter;
/// ```
#[derive(Clone, Debug, Default)]
pub struct JsonFilter {
    conditions: Vec<Condition>,
    keep_non_json: bool,
}

fn path(field: &str) -> Vec<String> {
    field.split('.').map(str::to_owned).collect()
}

impl JsonFilter {
    /// A filter with no conditions (keeps every JSON object).
    pub fn new() -> Self {
        Self::default()
    }

    /// The field (dotted path, e.g. `"eventData.temp"`) is present and not `null`.
    pub fn exists(mut self, field: &str) -> Self {
        self.conditions.push(Condition::Exists(path(field)));
        self
    }

    /// The field equals `value`.
    pub fn equals(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.conditions.push(Condition::Equals(path(field), value.into()));
        self
    }

    /// The field equals one of `values`.
    pub fn one_of<V: Into<Value>>(mut self, field: &str, values: impl IntoIterator<Item = V>) -> Self {
        self.conditions.push(Condition::OneOf(path(field), values.into_iter().map(Into::into).collect()));
        self
    }

    /// The field is a number within `min..=max` (either bound optional).
    pub fn number_between(mut self, field: &str, min: Option<f64>, max: Option<f64>) -> Self {
        self.conditions.push(Condition::NumberRange(path(field), min, max));
        self
    }

    /// Keep payloads that are not JSON objects instead of dropping them.
    pub fn keep_non_json(mut self, yes: bool) -> Self {
        self.keep_non_json = yes;
        self
    }

    /// Whether `payload` passes the filter.
    pub fn matches(&self, payload: &[u8]) -> bool {
        let value = match serde_json::from_slice::<Value>(payload) {
            Ok(value @ Value::Object(_)) => value,
            _ => return self.keep_non_json,
        };
        self.conditions.iter().all(|condition| match condition {
            Condition::Exists(path) => lookup(&value, path).is_some_and(|v| !v.is_null()),
            Condition::Equals(path, expected) => lookup(&value, path) == Some(expected),
            Condition::OneOf(path, allowed) => lookup(&value, path).is_some_and(|v| allowed.contains(v)),
            Condition::NumberRange(path, min, max) => lookup(&value, path)
                .and_then(Value::as_f64)
                .is_some_and(|n| min.is_none_or(|min| n >= min) && max.is_none_or(|max| n <= max)),
        })
    }
}

fn lookup<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_conditions() {
        let filter = JsonFilter::new().exists("temp").one_of("kind", ["a", "b"]).number_between("hum", Some(0.0), None);
        assert!(filter.matches(br#"{"temp":21.5,"kind":"a","hum":40}"#));
        assert!(!filter.matches(br#"{"temp":null,"kind":"a","hum":40}"#));
        assert!(!filter.matches(br#"{"kind":"a","hum":40}"#));
        assert!(!filter.matches(br#"{"temp":1,"kind":"c","hum":40}"#));
        assert!(!filter.matches(br#"{"temp":1,"kind":"a","hum":-1}"#));
        assert!(!filter.matches(b"not json"));
        assert!(filter.clone().keep_non_json(true).matches(b"not json"));
        assert!(JsonFilter::new().equals("eventData.type", "door").matches(br#"{"eventData":{"type":"door"}}"#));
    }

    #[test]
    fn closures_and_json_filters_are_record_filters() {
        let record = Record::new(&br#"{"temp":3}"#[..], "k", crate::SequenceNumber::from_u128(1));
        assert!(RecordFilter::from(JsonFilter::new().exists("temp")).keeps(&record));
        assert!(!RecordFilter::new(|r: &Record| r.partition_key.as_ref() == "other").keeps(&record));
    }
}
