//! Parsing a pattern's JSON into an [`ObjectPattern`], with errors that name the position (`at data.temp[0]`).

use serde_json::{Map, Value};

use super::{Bound, FieldPattern, Literal, Matcher, ObjectPattern};

/// Parses the text of one pattern.
pub(crate) fn pattern(text: &str) -> Result<ObjectPattern, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| super::syntax(&e))?;
    match &value {
        Value::Object(map) => object(map, &mut Vec::new()),
        _ => Err("at the top: a pattern is a JSON object, e.g. {\"data\":{\"type\":[\"buy\"]}}".to_owned()),
    }
}

/// The position of a pattern element: `data.order.type[1]`.
fn here(path: &[String]) -> String {
    if path.is_empty() {
        return "the top".to_owned();
    }
    let mut out = String::new();
    for part in path {
        if !part.starts_with('[') && !out.is_empty() {
            out.push('.');
        }
        out.push_str(part);
    }
    out
}

fn error(path: &[String], message: impl std::fmt::Display) -> String {
    format!("at {}: {message}", here(path))
}

fn object(map: &Map<String, Value>, path: &mut Vec<String>) -> Result<ObjectPattern, String> {
    if map.is_empty() {
        return Err(error(path, "an empty object matches nothing; name at least one field"));
    }
    let mut pattern = ObjectPattern { fields: Vec::new(), any_of: Vec::new() };
    for (key, value) in map {
        path.push(key.clone());
        if key == "$or" {
            pattern.any_of.push(alternatives(value, path)?);
        } else {
            let field = match value {
                Value::Object(nested) => FieldPattern::Nested(object(nested, path)?),
                Value::Array(items) if items.is_empty() => {
                    return Err(error(path, "an empty array matches nothing; list at least one value or matcher"));
                }
                Value::Array(items) => FieldPattern::Leaf(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| {
                            path.push(format!("[{i}]"));
                            let parsed = matcher(item, path);
                            path.pop();
                            parsed
                        })
                        .collect::<Result<_, _>>()?,
                ),
                other => {
                    return Err(error(
                        path,
                        format!("a field needs an array of values or matchers, or an object: write [{other}]"),
                    ));
                }
            };
            pattern.fields.push((key.clone(), field));
        }
        path.pop();
    }
    Ok(pattern)
}

fn alternatives(value: &Value, path: &mut Vec<String>) -> Result<Vec<ObjectPattern>, String> {
    let items = match value {
        Value::Array(items) if items.len() >= 2 => items,
        _ => return Err(error(path, "$or needs an array of at least two pattern objects")),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            path.push(format!("[{i}]"));
            let parsed = match item {
                Value::Object(map) => object(map, path),
                _ => Err(error(path, "each $or alternative is a pattern object")),
            };
            path.pop();
            parsed
        })
        .collect()
}

fn literal(value: &Value) -> Option<Literal> {
    Some(match value {
        Value::String(s) => Literal::Str(s.clone()),
        Value::Number(n) => Literal::Num(n.as_f64()?),
        Value::Bool(b) => Literal::Bool(*b),
        Value::Null => Literal::Null,
        Value::Array(_) | Value::Object(_) => return None,
    })
}

fn matcher(value: &Value, path: &mut Vec<String>) -> Result<Matcher, String> {
    if let Some(literal) = literal(value) {
        return Ok(Matcher::Equals(literal));
    }
    let map = match value {
        Value::Object(map) if map.len() == 1 => map,
        Value::Object(_) => return Err(error(path, "a matcher object has exactly one operator")),
        _ => return Err(error(path, "arrays cannot be nested; list the values in one array")),
    };
    let Some((operator, operand)) = map.iter().next() else {
        return Err(error(path, "a matcher object has exactly one operator"));
    };
    path.push(operator.clone());
    let parsed = match operator.as_str() {
        "prefix" => text_or_ignore_case(operand, path).map(|(text, ignore_case)| Matcher::Prefix { text, ignore_case }),
        "suffix" => text_or_ignore_case(operand, path).map(|(text, ignore_case)| Matcher::Suffix { text, ignore_case }),
        "equals-ignore-case" => match operand {
            Value::String(s) => Ok(Matcher::EqualsIgnoreCase(s.clone())),
            _ => Err(error(path, "expects a string")),
        },
        "anything-but" => anything_but(operand, path),
        "numeric" => numeric(operand, path),
        "exists" => match operand {
            Value::Bool(b) => Ok(Matcher::Exists(*b)),
            _ => Err(error(path, "expects true or false")),
        },
        "cidr" | "wildcard" => {
            Err(error(path, "is an EventBridge operator that Lambda event filtering does not accept"))
        }
        other => Err(error(
            path,
            format!(
                "unknown operator \"{other}\" (known: prefix, suffix, equals-ignore-case, anything-but, numeric, exists)"
            ),
        )),
    };
    path.pop();
    parsed
}

/// `"text"` or `{"equals-ignore-case": "text"}`.
fn text_or_ignore_case(operand: &Value, path: &[String]) -> Result<(String, bool), String> {
    match operand {
        Value::String(s) => Ok((s.clone(), false)),
        Value::Object(map) if map.len() == 1 => match map.get("equals-ignore-case") {
            Some(Value::String(s)) => Ok((s.clone(), true)),
            _ => Err(error(path, "expects a string or {\"equals-ignore-case\": \"...\"}")),
        },
        _ => Err(error(path, "expects a string or {\"equals-ignore-case\": \"...\"}")),
    }
}

fn anything_but(operand: &Value, path: &[String]) -> Result<Matcher, String> {
    match operand {
        Value::Array(items) => {
            if items.is_empty() {
                return Err(error(path, "expects at least one value"));
            }
            let all_strings = items.iter().all(Value::is_string);
            let all_numbers = items.iter().all(Value::is_number);
            if !all_strings && !all_numbers {
                return Err(error(path, "a list must hold only strings or only numbers"));
            }
            Ok(Matcher::AnythingBut(items.iter().filter_map(literal).collect()))
        }
        Value::Object(map) if map.len() == 1 => {
            let Some((operator, value)) = map.iter().next() else {
                return Err(error(path, "expects one operator"));
            };
            match (operator.as_str(), value) {
                ("prefix", Value::String(s)) => Ok(Matcher::AnythingButPrefix(s.clone())),
                ("suffix", Value::String(s)) => Ok(Matcher::AnythingButSuffix(s.clone())),
                ("equals-ignore-case", Value::String(s)) => Ok(Matcher::AnythingButIgnoreCase(vec![s.clone()])),
                ("equals-ignore-case", Value::Array(items))
                    if !items.is_empty() && items.iter().all(Value::is_string) =>
                {
                    Ok(Matcher::AnythingButIgnoreCase(
                        items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
                    ))
                }
                (operator, _) => Err(error(
                    path,
                    format!(
                        "{{\"{operator}\": ..}} is not accepted here (use prefix, suffix or equals-ignore-case with a \
                         string)"
                    ),
                )),
            }
        }
        Value::Object(_) => Err(error(path, "expects one operator: prefix, suffix or equals-ignore-case")),
        other => literal(other)
            .map(|literal| Matcher::AnythingBut(vec![literal]))
            .ok_or_else(|| error(path, "expects a value")),
    }
}

/// `["=", 5]`, or one or two bounds: `[">", 0]`, `[">=", 0, "<", 10]`.
fn numeric(operand: &Value, path: &[String]) -> Result<Matcher, String> {
    let items = match operand {
        Value::Array(items) if !items.is_empty() && items.len() % 2 == 0 && items.len() <= 4 => items,
        _ => return Err(error(path, "expects [\"=\", n] or one or two bounds like [\">\", 0, \"<=\", 5]")),
    };
    let (mut lower, mut upper): (Bound, Bound) = (None, None);
    for pair in items.chunks(2) {
        let (Some(op), Some(n)) = (pair[0].as_str(), pair[1].as_f64()) else {
            return Err(error(path, format!("expects an operator and a number, got {} and {}", pair[0], pair[1])));
        };
        let slot = match op {
            "=" if items.len() == 2 => {
                return Ok(Matcher::Numeric { lower: Some((n, true)), upper: Some((n, true)) });
            }
            ">" | ">=" => &mut lower,
            "<" | "<=" => &mut upper,
            "=" => return Err(error(path, "\"=\" stands alone: [\"=\", n]")),
            other => return Err(error(path, format!("unknown comparison \"{other}\" (use =, <, <=, >, >=)"))),
        };
        if slot.is_some() {
            return Err(error(path, "at most one lower and one upper bound"));
        }
        *slot = Some((n, op.ends_with('=')));
    }
    if let (Some((low, _)), Some((high, _))) = (lower, upper)
        && low > high
    {
        return Err(error(path, format!("the range is empty: lower bound {low} is above upper bound {high}")));
    }
    Ok(Matcher::Numeric { lower, upper })
}
