//! Lambda's event filtering for Kinesis: [`FilterCriteria`], parsed from the same JSON a Lambda event source
//! mapping takes (`{"Filters":[{"Pattern":"{...}"}]}`), matched against every user record before processing.
//!
//! The pattern language is EventBridge's, as Lambda documents it for Kinesis: a pattern is a JSON object whose keys
//! name fields of the record and whose values are either nested objects (all fields must match) or arrays of
//! matchers (any one must match):
//!
//! | matcher | example |
//! |---|---|
//! | equals (string, number, `true`/`false`, `null`, `""`) | `"type": ["buy", "sell"]` |
//! | equals-ignore-case | `"type": [{"equals-ignore-case": "BUY"}]` |
//! | prefix, suffix (optionally ignoring case) | `"id": [{"prefix": "dev-"}]`, `"f": [{"suffix": {"equals-ignore-case": ".PNG"}}]` |
//! | anything-but (value, list, prefix, suffix, equals-ignore-case) | `"state": [{"anything-but": ["init", "test"]}]` |
//! | numeric (equals, ranges) | `"temp": [{"numeric": [">", 0, "<=", 100]}]` |
//! | exists / does not exist | `"error": [{"exists": false}]` |
//! | or across fields | `"$or": [{"a": [1]}, {"b": [2]}]` |
//!
//! The fields are those of the `kinesis` object of Lambda's event: `data` (the payload parsed as JSON),
//! `partitionKey`, `sequenceNumber`, `approximateArrivalTimestamp` (epoch seconds) and `kinesisSchemaVersion`
//! (`"1.0"`). A record whose payload is not JSON never matches a pattern on `data` (Lambda drops it), but can still
//! match one on metadata only. When a value in the record is an array, a matcher matches when any element does.
//! Several filters in one `FilterCriteria` are OR'ed: a record is processed when any filter matches it.
//!
//! A bad pattern is refused when it is parsed, with an error naming where it is wrong
//! (`Filters[1].Pattern: at data.temp[0]: unknown operator "numbers"`). Operators Lambda does not accept for
//! Kinesis (`cidr`, `wildcard`) are refused likewise, so a pattern that works here works in Lambda.

mod matching;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;

use serde_json::Value;

use super::RecordFilter;
use crate::KclError;
use crate::types::Record;

/// One parsed pattern: a tree of field conditions.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ObjectPattern {
    /// Every field must match.
    pub(crate) fields: Vec<(String, FieldPattern)>,
    /// Every `$or` must have one alternative that matches.
    pub(crate) any_of: Vec<Vec<ObjectPattern>>,
}

/// What one field of a pattern requires.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum FieldPattern {
    /// The field is an object meeting this pattern.
    Nested(ObjectPattern),
    /// The field's value meets one of these matchers.
    Leaf(Vec<Matcher>),
}

/// A literal value of a pattern.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

/// A bound of a numeric range: the number and whether it is included.
pub(crate) type Bound = Option<(f64, bool)>;

/// One matcher of a leaf field.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Matcher {
    Equals(Literal),
    EqualsIgnoreCase(String),
    Prefix { text: String, ignore_case: bool },
    Suffix { text: String, ignore_case: bool },
    AnythingBut(Vec<Literal>),
    AnythingButPrefix(String),
    AnythingButSuffix(String),
    AnythingButIgnoreCase(Vec<String>),
    Numeric { lower: Bound, upper: Bound },
    Exists(bool),
}

/// Lambda's `FilterCriteria` for a Kinesis event source: one or more patterns, OR'ed. Dropped records count as
/// processed (the checkpoint moves past them), as in Lambda.
///
/// ```
/// use kcl_core::process::{FilterCriteria, RecordFilter};
/// // Exactly what `aws lambda create-event-source-mapping --filter-criteria` takes.
/// let criteria = FilterCriteria::from_json(
///     r#"{"Filters":[{"Pattern":"{\"data\":{\"temp\":[{\"numeric\":[\">\",30]}]}}"},
///                    {"Pattern":"{\"partitionKey\":[{\"prefix\":\"alarm-\"}]}"}]}"#,
/// )?;
/// let hot = kcl_core::Record::new(r#"{"temp":31.5}"#, "device-7", kcl_core::SequenceNumber::from_u128(1));
/// assert!(criteria.matches(&hot));
/// let filter: RecordFilter = criteria.into(); // WorkerBuilder::filter(filter)
/// # let _ = filter;
/// # Ok::<(), kcl_core::KclError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct FilterCriteria {
    patterns: Vec<ObjectPattern>,
}

impl FilterCriteria {
    /// Parses Lambda's `FilterCriteria` JSON: `{"Filters":[{"Pattern":"<pattern JSON as a string>"}, ...]}`.
    /// Errors name the filter and the position in its pattern.
    pub fn from_json(criteria: &str) -> Result<Self, KclError> {
        let value: Value = serde_json::from_str(criteria).map_err(|e| invalid("FilterCriteria", syntax(&e)))?;
        let filters = value
            .get("Filters")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("FilterCriteria", "expected an object with a \"Filters\" array".to_owned()))?;
        if filters.is_empty() {
            return Err(invalid("FilterCriteria.Filters", "needs at least one filter".to_owned()));
        }
        let patterns = filters
            .iter()
            .enumerate()
            .map(|(i, filter)| {
                let at = format!("Filters[{i}].Pattern");
                let text = filter
                    .get("Pattern")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid(&at, "expected a string holding the pattern's JSON".to_owned()))?;
                parse::pattern(text).map_err(|e| invalid(&at, e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// Parses one pattern (the text of a `Pattern` field), e.g. `{"data":{"type":["buy"]}}`.
    pub fn pattern(pattern: &str) -> Result<Self, KclError> {
        let pattern = parse::pattern(pattern).map_err(|e| invalid("Pattern", e))?;
        Ok(Self { patterns: vec![pattern] })
    }

    /// Adds another pattern (OR'ed with the others).
    pub fn or_pattern(mut self, pattern: &str) -> Result<Self, KclError> {
        let at = format!("Filters[{}].Pattern", self.patterns.len());
        self.patterns.push(parse::pattern(pattern).map_err(|e| invalid(&at, e))?);
        Ok(self)
    }

    /// Whether `record` matches any of the patterns (and is therefore processed).
    pub fn matches(&self, record: &Record) -> bool {
        let view = matching::RecordView::new(record);
        self.patterns.iter().any(|pattern| view.matches(pattern))
    }
}

impl From<FilterCriteria> for RecordFilter {
    fn from(criteria: FilterCriteria) -> Self {
        Self::new(move |record| criteria.matches(record))
    }
}

impl fmt::Display for FilterCriteria {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FilterCriteria({} pattern(s))", self.patterns.len())
    }
}

fn invalid(at: &str, message: String) -> KclError {
    KclError::InvalidFilter(format!("{at}: {message}"))
}

/// A JSON syntax error with its line and column.
pub(crate) fn syntax(error: &serde_json::Error) -> String {
    format!("line {} column {}: not valid JSON: {error}", error.line(), error.column())
}
