//! Matching a parsed pattern against a record: the record seen as the `kinesis` object of Lambda's event, with its
//! payload parsed (once, and only if a pattern looks at `data`).

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::UNIX_EPOCH;

use serde_json::Value;

use super::{FieldPattern, Literal, Matcher, ObjectPattern};
use crate::types::Record;

/// A record as Lambda's filter sees it.
pub(crate) struct RecordView<'a> {
    record: &'a Record,
    /// The payload as JSON; `None` when it is not JSON.
    data: OnceLock<Option<Value>>,
}

/// A top-level field of the view.
enum Field<'v> {
    Missing,
    /// `data` of a payload that is not JSON: no pattern on it matches.
    NotJson,
    Value(Cow<'v, Value>),
}

impl<'a> RecordView<'a> {
    pub(crate) fn new(record: &'a Record) -> Self {
        Self { record, data: OnceLock::new() }
    }

    fn field(&self, key: &str) -> Field<'_> {
        let record = self.record;
        match key {
            "data" => match self.data.get_or_init(|| serde_json::from_slice(&record.data).ok()) {
                Some(value) => Field::Value(Cow::Borrowed(value)),
                None => Field::NotJson,
            },
            "partitionKey" => owned(Value::from(&*record.partition_key)),
            "sequenceNumber" => owned(Value::from(record.sequence_number.as_str())),
            "kinesisSchemaVersion" => owned(Value::from("1.0")),
            "approximateArrivalTimestamp" => match record.approximate_arrival_timestamp {
                Some(at) => match at.duration_since(UNIX_EPOCH) {
                    Ok(since) => owned(Value::from(since.as_millis() as f64 / 1000.0)),
                    Err(_) => Field::Missing,
                },
                None => Field::Missing,
            },
            _ => Field::Missing,
        }
    }

    /// Whether the record matches `pattern` (a top-level pattern).
    pub(crate) fn matches(&self, pattern: &ObjectPattern) -> bool {
        pattern.fields.iter().all(|(key, field)| {
            let value = match self.field(key) {
                Field::NotJson => return false,
                Field::Missing => None,
                Field::Value(value) => Some(value),
            };
            field_matches(field, value.as_deref())
        }) && pattern.any_of.iter().all(|alternatives| alternatives.iter().any(|alt| self.matches(alt)))
    }
}

fn owned(value: Value) -> Field<'static> {
    Field::Value(Cow::Owned(value))
}

fn field_matches(field: &FieldPattern, value: Option<&Value>) -> bool {
    match field {
        FieldPattern::Nested(nested) => object_matches(nested, value),
        FieldPattern::Leaf(matchers) => matchers.iter().any(|matcher| matcher.matches(value)),
    }
}

/// A nested pattern against a value: an object meeting it, or an array with an element that does.
pub(crate) fn object_matches(pattern: &ObjectPattern, value: Option<&Value>) -> bool {
    if let Some(Value::Array(items)) = value {
        return items.iter().any(|item| object_matches(pattern, Some(item)));
    }
    let object = value.and_then(Value::as_object);
    pattern.fields.iter().all(|(key, field)| field_matches(field, object.and_then(|o| o.get(key))))
        && pattern.any_of.iter().all(|alternatives| alternatives.iter().any(|alt| object_matches(alt, value)))
}

impl Matcher {
    /// `value` is `None` when the field is absent.
    pub(crate) fn matches(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            // `exists` is about leaves: an object is not a value that exists for it.
            (Self::Exists(wanted), value) => value.is_some_and(|v| !v.is_object()) == *wanted,
            (_, None) => false,
            (_, Some(Value::Array(items))) => items.iter().any(|item| self.matches_scalar(item)),
            (_, Some(value)) => self.matches_scalar(value),
        }
    }

    fn matches_scalar(&self, value: &Value) -> bool {
        let text = value.as_str();
        match self {
            Self::Equals(literal) => literal.equals(value),
            Self::EqualsIgnoreCase(expected) => text.is_some_and(|t| t.to_lowercase() == expected.to_lowercase()),
            Self::Prefix { text: prefix, ignore_case: false } => text.is_some_and(|t| t.starts_with(prefix.as_str())),
            Self::Prefix { text: prefix, ignore_case: true } => {
                text.is_some_and(|t| t.to_lowercase().starts_with(&prefix.to_lowercase()))
            }
            Self::Suffix { text: suffix, ignore_case: false } => text.is_some_and(|t| t.ends_with(suffix.as_str())),
            Self::Suffix { text: suffix, ignore_case: true } => {
                text.is_some_and(|t| t.to_lowercase().ends_with(&suffix.to_lowercase()))
            }
            Self::AnythingBut(excluded) => !value.is_object() && !excluded.iter().any(|l| l.equals(value)),
            Self::AnythingButPrefix(prefix) => text.is_some_and(|t| !t.starts_with(prefix.as_str())),
            Self::AnythingButSuffix(suffix) => text.is_some_and(|t| !t.ends_with(suffix.as_str())),
            Self::AnythingButIgnoreCase(excluded) => {
                text.is_some_and(|t| !excluded.iter().any(|e| e.to_lowercase() == t.to_lowercase()))
            }
            Self::Numeric { lower, upper } => value.as_f64().is_some_and(|n| {
                lower.is_none_or(|(bound, inclusive)| if inclusive { n >= bound } else { n > bound })
                    && upper.is_none_or(|(bound, inclusive)| if inclusive { n <= bound } else { n < bound })
            }),
            Self::Exists(_) => false,
        }
    }
}

impl Literal {
    /// Strings match strings exactly, numbers match numbers by value (`5` matches `5.0`), `null` matches `null`.
    fn equals(&self, value: &Value) -> bool {
        match (self, value) {
            (Self::Str(expected), Value::String(actual)) => expected == actual,
            (Self::Num(expected), Value::Number(actual)) => actual.as_f64() == Some(*expected),
            (Self::Bool(expected), Value::Bool(actual)) => expected == actual,
            (Self::Null, Value::Null) => true,
            _ => false,
        }
    }
}
