//! The JSON mapping of [`Value`], used by the CLI and the HTTP gateway.
//!
//! JSON has no bytes, dates or non-finite floats, so those travel as single-key objects whose
//! key starts with `$`:
//!
//! | Value | JSON |
//! |---|---|
//! | `None` | `null` |
//! | `Bool` | `true` / `false` |
//! | `Int` | integer number; on input, integers in `i64::MIN..=u64::MAX` become `Int`, larger ones `Float` |
//! | `Float` (finite) | number, always with a fraction or exponent (`1.0`, `1e300`); on input, any number with a fraction or exponent becomes `Float` |
//! | `Float` (NaN, ±∞) | `{"$float": "NaN"}`, `{"$float": "Infinity"}`, `{"$float": "-Infinity"}` |
//! | `String` | string |
//! | `Bytes` | `{"$bytes": "<standard base64, padded>"}` |
//! | `List` | array |
//! | `Map` | object; a map with exactly one key, starting with `$`, is wrapped: `{"$map": {"$key": …}}` |
//! | `Date` | `{"$date": "2026-11-24"}` (years outside 0–9999 signed: `"+10000-01-01"`, `"-0001-01-01"`) |
//! | `Time` | `{"$time": "12:34:56.123456789"}` (fraction optional, trailing zeros trimmed) |
//! | `DateTime` | `{"$datetime": "2026-11-24T12:34:56Z"}`; `±HH:MM[:SS]` for other offsets, no suffix for a naive date-time |
//! | `Duration` | `{"$duration": "PT1.5S"}`, `"-PT30S"` (`[-]PT<seconds>[.<fraction>]S`); on input a plain number of seconds is accepted too |
//! | `Opaque` | `{"$opaque": {"type": "my:type", "data": "<base64>"}}` |
//!
//! Round trips are exact: `from_json(&to_json(&v)) == v` for every value, with two
//! caveats. A NaN's payload bits are not kept (every NaN comes back as `f64::NAN`), and
//! JSON *text* keeps `Float(1.0)` apart from `Int(1)` only because serde_json prints floats
//! with a fraction (`1.0`); hand-written JSON must do the same to get a float.
//!
//! On input, an object with a single `$`-key that is not one of the names above is rejected
//! rather than taken literally, so a misspelt `$dateime` is reported instead of silently
//! becoming a map; wrap such maps in `$map`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map as JsonMap, Number, Value as Json};

use super::{Duration, Integer, Limits, Opaque, Value, ValueError};

/// Converts a value to JSON according to the [mapping](self).
pub fn to_json(value: &Value) -> Json {
    match value {
        Value::None => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(n) => match n.as_u64() {
            Some(n) => Json::Number(n.into()),
            None => Json::Number(n.as_i64().unwrap_or(i64::MIN).into()),
        },
        Value::Float(f) => match Number::from_f64(*f) {
            Some(n) => Json::Number(n),
            None => special("$float", Json::String(non_finite_name(*f).to_owned())),
        },
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => special("$bytes", Json::String(BASE64.encode(b))),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(map) => {
            let object: JsonMap<String, Json> =
                map.iter().map(|(k, v)| (k.clone(), to_json(v))).collect();
            if needs_map_wrapper(map) {
                special("$map", Json::Object(object))
            } else {
                Json::Object(object)
            }
        }
        Value::Date(d) => special("$date", Json::String(d.to_string())),
        Value::Time(t) => special("$time", Json::String(t.to_string())),
        Value::DateTime(dt) => special("$datetime", Json::String(dt.to_string())),
        Value::Duration(d) => special("$duration", Json::String(d.to_string())),
        Value::Opaque(o) => {
            let mut inner = JsonMap::new();
            inner.insert("type".to_owned(), Json::String(o.type_name.clone()));
            inner.insert("data".to_owned(), Json::String(BASE64.encode(&o.data)));
            special("$opaque", Json::Object(inner))
        }
    }
}

/// Converts JSON to a value according to the [mapping](self), with [`Limits::DEFAULT`].
pub fn from_json(json: &Json) -> Result<Value, ValueError> {
    from_json_with_limits(json, &Limits::DEFAULT)
}

/// Converts JSON to a value according to the [mapping](self); lists and maps may nest at most
/// `limits.max_depth` levels (`max_size` does not apply: the JSON is already in memory).
pub fn from_json_with_limits(json: &Json, limits: &Limits) -> Result<Value, ValueError> {
    // Bounds the recursion on JSON nesting; `$map` wrappers add a JSON level per map level,
    // so the exact limit on value nesting is left to `interpret`.
    let json_depth_limit = limits.max_depth.saturating_mul(2).saturating_add(1);
    let raw = json_to_raw(json, 0, json_depth_limit, limits.max_depth)?;
    interpret(raw, 0, limits.max_depth)
}

/// Parses JSON text and converts it according to the [mapping](self). Text longer than
/// `limits.max_size` bytes is rejected before parsing.
pub fn from_json_str_with_limits(text: &str, limits: &Limits) -> Result<Value, ValueError> {
    if text.len() > limits.max_size {
        return Err(ValueError::TooLarge {
            size: text.len(),
            limit: limits.max_size,
        });
    }
    let json: Json = serde_json::from_str(text).map_err(|e| ValueError::Json(e.to_string()))?;
    from_json_with_limits(&json, limits)
}

fn special(key: &str, inner: Json) -> Json {
    let mut object = JsonMap::new();
    object.insert(key.to_owned(), inner);
    Json::Object(object)
}

fn non_finite_name(f: f64) -> &'static str {
    if f.is_nan() {
        "NaN"
    } else if f > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// Whether a map would be mistaken for a special form and so must be wrapped in `$map`.
pub(super) fn needs_map_wrapper(map: &BTreeMap<String, Value>) -> bool {
    map.len() == 1 && map.keys().all(|k| k.starts_with('$'))
}

/// Converts JSON to a value without interpreting `$` objects (every object becomes a map).
fn json_to_raw(
    json: &Json,
    depth: usize,
    limit: usize,
    reported_limit: usize,
) -> Result<Value, ValueError> {
    let descend = || {
        if depth >= limit {
            Err(ValueError::TooDeep {
                limit: reported_limit,
            })
        } else {
            Ok(depth + 1)
        }
    };
    Ok(match json {
        Json::Null => Value::None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => number_to_value(n),
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => {
            let depth = descend()?;
            Value::List(
                items
                    .iter()
                    .map(|item| json_to_raw(item, depth, limit, reported_limit))
                    .collect::<Result<_, _>>()?,
            )
        }
        Json::Object(object) => {
            let depth = descend()?;
            Value::Map(
                object
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), json_to_raw(v, depth, limit, reported_limit)?)))
                    .collect::<Result<_, ValueError>>()?,
            )
        }
    })
}

fn number_to_value(n: &Number) -> Value {
    if let Some(u) = n.as_u64() {
        Value::Int(Integer::from(u))
    } else if let Some(i) = n.as_i64() {
        Value::Int(Integer::from(i))
    } else {
        // Without serde_json's arbitrary_precision every other number is an f64.
        Value::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// How the contents of a `$map` special form are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Nested {
    /// The contents are raw too and are interpreted recursively.
    Interpret,
    /// The contents are already proper values (the serde bridge builds them bottom-up).
    AsIs,
}

/// Turns a raw tree (maps straight from JSON or another serde format) into a value by
/// interpreting the special `$` forms, enforcing the depth limit on the result.
pub(super) fn interpret(raw: Value, depth: usize, max_depth: usize) -> Result<Value, ValueError> {
    let descend = || {
        if depth >= max_depth {
            Err(ValueError::TooDeep { limit: max_depth })
        } else {
            Ok(depth + 1)
        }
    };
    match raw {
        Value::List(items) => {
            let depth = descend()?;
            Ok(Value::List(
                items
                    .into_iter()
                    .map(|item| interpret(item, depth, max_depth))
                    .collect::<Result<_, _>>()?,
            ))
        }
        Value::Map(map) if needs_map_wrapper(&map) => {
            let Some((key, inner)) = map.into_iter().next() else {
                return Ok(Value::Map(BTreeMap::new()));
            };
            if key == "$map" {
                // The wrapper itself is not a level; the wrapped map is.
                descend()?;
            }
            special_form(&key, inner, Nested::Interpret, depth, max_depth)
        }
        Value::Map(map) => {
            let depth = descend()?;
            Ok(Value::Map(interpret_entries(map, depth, max_depth)?))
        }
        other => Ok(other),
    }
}

fn interpret_entries(
    map: BTreeMap<String, Value>,
    depth: usize,
    max_depth: usize,
) -> Result<BTreeMap<String, Value>, ValueError> {
    map.into_iter()
        .map(|(k, v)| Ok((k, interpret(v, depth, max_depth)?)))
        .collect()
}

/// Decodes the special form `{key: inner}`. `depth` is the depth of the form itself.
pub(super) fn special_form(
    key: &str,
    inner: Value,
    nested: Nested,
    depth: usize,
    max_depth: usize,
) -> Result<Value, ValueError> {
    let malformed = |expected: &str| ValueError::Json(format!("{key} must hold {expected}"));
    match key {
        "$map" => match (inner, nested) {
            (Value::Map(map), Nested::AsIs) => Ok(Value::Map(map)),
            (Value::Map(map), Nested::Interpret) => {
                Ok(Value::Map(interpret_entries(map, depth + 1, max_depth)?))
            }
            _ => Err(malformed("an object")),
        },
        "$bytes" => match inner {
            Value::String(s) => Ok(Value::Bytes(decode_base64(key, &s)?)),
            Value::Bytes(b) => Ok(Value::Bytes(b)),
            _ => Err(malformed("a base64 string")),
        },
        "$float" => match inner {
            Value::String(s) => match s.as_str() {
                "NaN" => Ok(Value::Float(f64::NAN)),
                "Infinity" => Ok(Value::Float(f64::INFINITY)),
                "-Infinity" => Ok(Value::Float(f64::NEG_INFINITY)),
                _ => Err(malformed(r#""NaN", "Infinity" or "-Infinity""#)),
            },
            Value::Float(f) => Ok(Value::Float(f)),
            Value::Int(n) => Ok(Value::Float(n.to_f64())),
            _ => Err(malformed("a string")),
        },
        "$date" => match inner {
            Value::String(s) => Ok(Value::Date(s.parse()?)),
            _ => Err(malformed("a string")),
        },
        "$time" => match inner {
            Value::String(s) => Ok(Value::Time(s.parse()?)),
            _ => Err(malformed("a string")),
        },
        "$datetime" => match inner {
            Value::String(s) => Ok(Value::DateTime(s.parse()?)),
            _ => Err(malformed("a string")),
        },
        "$duration" => match inner {
            Value::String(s) => Ok(Value::Duration(s.parse()?)),
            Value::Int(n) => {
                let seconds = n.as_i64().ok_or_else(|| {
                    ValueError::InvalidDate(format!("{n} seconds is too long a duration"))
                })?;
                Ok(Value::Duration(Duration::new(seconds, 0)?))
            }
            Value::Float(f) => Ok(Value::Duration(Duration::from_secs_f64(f)?)),
            _ => Err(malformed("a string or a number of seconds")),
        },
        "$opaque" => {
            let Value::Map(mut map) = inner else {
                return Err(malformed(r#"an object {"type": …, "data": …}"#));
            };
            let (Some(Value::String(type_name)), Some(data), true) =
                (map.remove("type"), map.remove("data"), map.is_empty())
            else {
                return Err(malformed(
                    r#"exactly the keys "type" (a string) and "data" (base64)"#,
                ));
            };
            let data = match data {
                Value::String(s) => decode_base64(key, &s)?,
                Value::Bytes(b) => b,
                _ => return Err(malformed(r#"base64 "data""#)),
            };
            Ok(Value::Opaque(Opaque { type_name, data }))
        }
        _ => Err(ValueError::Json(format!(
            "unknown special form {key:?}; write a map with a single `$` key as \
             {{\"$map\": {{…}}}}"
        ))),
    }
}

fn decode_base64(key: &str, s: &str) -> Result<Vec<u8>, ValueError> {
    BASE64
        .decode(s)
        .map_err(|e| ValueError::Json(format!("{key} holds invalid base64: {e}")))
}
