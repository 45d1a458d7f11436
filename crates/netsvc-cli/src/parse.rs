//! Parsers for command-line values: durations, lifetimes and message values.

use std::time::Duration;

use anyhow::{Context as _, bail};
use netsvc::{Lifetime, Value};

/// Longest duration accepted anywhere: a hundred years (past that, say `forever`/`none`).
const MAX_SECONDS: f64 = 100.0 * 365.0 * 24.0 * 3600.0;

/// A non-negative number of seconds, possibly fractional.
pub(crate) fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{text:?} is not a non-negative number of seconds"));
    }
    if secs > MAX_SECONDS {
        return Err(format!("{text:?} seconds is more than a hundred years"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// How long to wait for the exchange. A floor keeps `--retry 0` meaningful (one quick
/// attempt) instead of failing before the first connection could complete.
pub(crate) fn wait_seconds(text: &str) -> Result<Duration, String> {
    Ok(seconds(text)?.max(Duration::from_millis(200)))
}

/// A request timeout; `None`: no timeout. (A newtype, because clap takes an `Option`
/// field to mean an optional flag.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeout(pub(crate) Option<Duration>);

/// A request timeout: positive seconds, or `none` for no timeout.
pub(crate) fn timeout(text: &str) -> Result<Timeout, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Timeout(None));
    }
    let d = seconds(text)?;
    if d.is_zero() {
        return Err("a timeout must be positive (or `none` for no timeout)".to_owned());
    }
    Ok(Timeout(Some(d)))
}

/// A report lifetime: `none`/`0`, positive seconds, or `forever`/`-1` (the original's
/// integers, plus words that say what they mean).
pub(crate) fn lifetime(text: &str) -> Result<Lifetime, String> {
    match text.trim() {
        t if t.eq_ignore_ascii_case("none") => Ok(Lifetime::None),
        t if t.eq_ignore_ascii_case("forever") || t == "-1" => Ok(Lifetime::Forever),
        t => {
            let d = seconds(t).map_err(|e| format!("{e} (or none, or forever)"))?;
            Ok(if d.is_zero() {
                Lifetime::None
            } else {
                Lifetime::For(d)
            })
        }
    }
}

/// A value given on the command line: JSON if it parses as JSON, else the text itself as
/// a string (so `hello` needs no quotes), unless `strict`.
///
/// Text that *is* JSON but not a valid netsvc value (such as a misspelt `{"$dateime": ..}`)
/// is an error either way: taking it as a string would hide the mistake.
pub(crate) fn value(text: &str, strict: bool) -> anyhow::Result<Value> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) => netsvc::value::json::from_json(&json).context("not a valid netsvc value"),
        Err(e) if strict => bail!("invalid JSON: {e}"),
        Err(_) => Ok(Value::String(text.to_owned())),
    }
}

/// A value that must be JSON (a `SUBJECT JSON` line of `publish`).
pub(crate) fn json_value(text: &str) -> anyhow::Result<Value> {
    value(text, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fall_back_to_strings() {
        assert_eq!(value("42", false).unwrap(), Value::from(42));
        assert_eq!(value("\"42\"", false).unwrap(), Value::from("42"));
        assert_eq!(value("hello", false).unwrap(), Value::from("hello"));
        assert_eq!(value("", false).unwrap(), Value::from(""));
        assert_eq!(value("{bad", false).unwrap(), Value::from("{bad"));
        assert!(value("{bad", true).is_err());
        assert!(value(r#"{"$dateime":"x"}"#, false).is_err());
        assert_eq!(
            value("[1,2.5,null]", true).unwrap(),
            Value::List(vec![1.into(), 2.5.into(), Value::None])
        );
    }

    #[test]
    fn durations_and_lifetimes() {
        assert_eq!(seconds("1.5").unwrap(), Duration::from_millis(1500));
        assert!(seconds("-1").is_err() && seconds("NaN").is_err() && seconds("x").is_err());
        assert_eq!(wait_seconds("0").unwrap(), Duration::from_millis(200));
        assert_eq!(timeout("none").unwrap(), Timeout(None));
        assert!(timeout("0").is_err());
        assert_eq!(lifetime("forever").unwrap(), Lifetime::Forever);
        assert_eq!(lifetime("-1").unwrap(), Lifetime::Forever);
        assert_eq!(lifetime("0").unwrap(), Lifetime::None);
        assert_eq!(lifetime("none").unwrap(), Lifetime::None);
        assert_eq!(
            lifetime("5").unwrap(),
            Lifetime::For(Duration::from_secs(5))
        );
        assert!(lifetime("-2").is_err());
    }
}
