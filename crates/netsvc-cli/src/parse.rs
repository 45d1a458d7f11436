//! Parsers for command-line values: durations, lifetimes and message values.

use std::ops::ControlFlow;
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

/// How long a client waits for its link to the exchange: `None` for as long as it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wait(pub(crate) Option<Duration>);

/// The shortest `--wait`: enough for one quick attempt (`--wait 0`) to complete.
pub(crate) const MIN_WAIT: Duration = Duration::from_millis(200);

/// How long to wait for the exchange: seconds (at least [`MIN_WAIT`], so that `--wait 0`
/// still makes one quick attempt), or `forever`.
pub(crate) fn wait(text: &str) -> Result<Wait, String> {
    if text.trim().eq_ignore_ascii_case("forever") {
        return Ok(Wait(None));
    }
    let d = seconds(text).map_err(|e| format!("{e} (or forever)"))?;
    Ok(Wait(Some(d.max(MIN_WAIT))))
}

/// A service name given on the command line (not empty, nothing forbidden in it).
pub(crate) fn service_name(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("a service name must not be empty".to_owned());
    }
    netsvc::names::check_service_name(text).map_err(|e| e.to_string())?;
    Ok(text.to_owned())
}

/// `--expose`: all, local, group:NAME or name:NAME.
pub(crate) fn exposure(text: &str) -> Result<netsvc_gateway::Exposure, String> {
    use netsvc_gateway::Exposure;
    match text.split_once(':') {
        None if text == "all" => Ok(Exposure::All),
        None if text == "local" => Ok(Exposure::Local),
        Some(("group", name)) if !name.is_empty() => Ok(Exposure::Group(name.to_owned())),
        Some(("name", name)) if !name.is_empty() => Ok(Exposure::Name(name.to_owned())),
        _ => Err("expected all, local, group:NAME or name:NAME".to_owned()),
    }
}

/// The delay between attempts to reach the exchange: positive seconds (at least 10 ms, the
/// library's floor).
pub(crate) fn retry(text: &str) -> Result<Duration, String> {
    let d = seconds(text)?;
    if d.is_zero() {
        return Err("the delay between attempts must be positive".to_owned());
    }
    Ok(d.max(Duration::from_millis(10)))
}

/// A positive number of seconds.
pub(crate) fn positive_seconds(text: &str) -> Result<Duration, String> {
    let d = seconds(text)?;
    if d.is_zero() {
        return Err(format!("{text:?}: expected a positive number of seconds"));
    }
    Ok(d)
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

/// How deep lists and maps may nest in a value: the library's limit
/// (`netsvc::value::Limits::default().max_depth`).
pub(crate) const MAX_DEPTH: usize = netsvc::value::Limits::DEFAULT.max_depth;

/// Calls `each` with every byte of `text` outside JSON strings and the nesting depth after
/// it; the text need not be well-formed. Scanning the text itself, rather than asking
/// serde_json, also covers text deeper than serde_json's own recursion limit (128), which it
/// refuses to parse at all.
fn scan_json_structure(text: &str, mut each: impl FnMut(u8, usize) -> ControlFlow<()>) {
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if each(b, depth).is_break() {
            return;
        }
    }
}

/// How many levels of JSON structure (`[` and `{`, outside strings) the deepest point of
/// `text` is inside.
pub(crate) fn json_depth(text: &str) -> usize {
    let mut deepest = 0;
    scan_json_structure(text, |_, depth| {
        deepest = deepest.max(depth);
        ControlFlow::Continue(())
    });
    deepest
}

/// A value nested deeper than [`MAX_DEPTH`]: what `what` is, and how deep.
fn too_deep(what: &str, depth: usize) -> anyhow::Error {
    let what = if what.is_empty() { "the value" } else { what };
    anyhow::anyhow!("{what} is nested {depth} levels deep; the limit is {MAX_DEPTH}")
}

/// `what: message`, or the message alone when `what` is empty.
fn named(what: &str, message: impl std::fmt::Display) -> String {
    if what.is_empty() {
        message.to_string()
    } else {
        format!("{what}: {message}")
    }
}

/// A value given on the command line: JSON if it parses as JSON, else the text itself as
/// a string (so `hello` needs no quotes), unless `strict`. `what` names it in errors
/// (`argument 2`, `VALUE`).
///
/// Text that *is* JSON but not a valid netsvc value (such as a misspelt `{"$dateime": ..}`)
/// is an error either way: taking it as a string would hide the mistake. So is text that
/// starts like JSON (`{`, `[` or `"`) and does not parse: a cut-off object is a mistake,
/// not a string someone meant to send. And so is text that opens more than [`MAX_DEPTH`]
/// levels of JSON structure, well-formed or not.
pub(crate) fn value(text: &str, strict: bool, what: &str) -> anyhow::Result<Value> {
    if text.trim_start().starts_with(['[', '{']) {
        let depth = json_depth(text);
        if depth > MAX_DEPTH {
            return Err(too_deep(what, depth));
        }
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) => netsvc::value::json::from_json(&json)
            .with_context(|| named(what, "not a valid netsvc value")),
        Err(e) if strict => bail!("{}", named(what, format_args!("invalid JSON: {e}"))),
        Err(e) if text.trim_start().starts_with(['{', '[', '"']) => bail!(
            "{}",
            named(
                what,
                format_args!(
                    "starts like JSON but is not valid JSON ({e}); to send it as text, \
                     write it as a JSON string"
                )
            )
        ),
        Err(_) => Ok(Value::String(text.to_owned())),
    }
}

/// A value that must be JSON (a `SUBJECT JSON` line of `publish`).
pub(crate) fn json_value(text: &str) -> anyhow::Result<Value> {
    value(text, true, "")
}

/// The arguments of a call from a JSON array (the text of `call --args FILE`), each
/// converted as a strict `ARG` would be; `source` names the file in errors.
pub(crate) fn json_args(text: &str, source: &str) -> anyhow::Result<Vec<Value>> {
    // The array is a level of its own; an argument may be MAX_DEPTH deep inside it.
    if json_depth(text) > MAX_DEPTH + 1 {
        // Say which argument: the first whose own text is too deep, if it can be told.
        return Err(deepest_element(text).map_or_else(
            || {
                anyhow::anyhow!(
                    "{source}: nested more than {MAX_DEPTH} levels deep inside its array"
                )
            },
            |(index, depth)| too_deep(&format!("argument {index}"), depth),
        ));
    }
    let json: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("{source}: invalid JSON"))?;
    let serde_json::Value::Array(items) = json else {
        bail!("{source}: expected a JSON array of the arguments, like [1, \"two\"]");
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            netsvc::value::json::from_json(item)
                .with_context(|| format!("argument {}: not a valid netsvc value", i + 1))
        })
        .collect()
}

/// In text that opens a JSON array, the first top-level element (1-based) nested more than
/// [`MAX_DEPTH`] levels deep, and how deep.
fn deepest_element(text: &str) -> Option<(usize, usize)> {
    let elements = text.trim_start().strip_prefix('[')?;
    let (mut index, mut deepest, mut found) = (1, 0, None);
    scan_json_structure(elements, |b, depth| {
        deepest = deepest.max(depth);
        if b == b',' && depth == 0 {
            if deepest > MAX_DEPTH {
                found = Some((index, deepest));
                return ControlFlow::Break(());
            }
            index += 1;
            deepest = 0;
        }
        ControlFlow::Continue(())
    });
    found.or((deepest > MAX_DEPTH).then_some((index, deepest)))
}

/// An exchange's address: `HOST:PORT` or `unix:PATH`; a bare `HOST` (or `[IPv6]`) means
/// the default port 11111, the original's.
pub(crate) fn exchange_address(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("an empty address: give HOST:PORT, HOST or unix:PATH".to_owned());
    }
    if text.starts_with("unix:") {
        return Ok(text.to_owned());
    }
    // `[::1]:11111` and `host:11111` have a port; `[::1]` and `host` do not. A bare IPv6
    // address is ambiguous (its last group could be a port): it needs brackets.
    let has_port = match text.strip_prefix('[') {
        Some(rest) => rest
            .split_once(']')
            .is_some_and(|(_, after)| after.starts_with(':')),
        None => text.contains(':'),
    };
    Ok(if has_port {
        text.to_owned()
    } else {
        format!("{text}:{DEFAULT_PORT}")
    })
}

/// The exchange's port when an address names none: the original's.
const DEFAULT_PORT: u16 = 11111;

/// A file mode in octal, such as `660` or `0o600`.
pub(crate) fn file_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(format!("{text:?} is not a file mode in octal (e.g. 660)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fall_back_to_strings() {
        let value = |text: &str, strict: bool| value(text, strict, "ARG");
        assert_eq!(value("42", false).unwrap(), Value::from(42));
        assert_eq!(value("\"42\"", false).unwrap(), Value::from("42"));
        assert_eq!(value("hello", false).unwrap(), Value::from("hello"));
        assert_eq!(value("", false).unwrap(), Value::from(""));
        assert!(value("{bad", false).is_err());
        assert!(value("[1,", false).is_err());
        assert!(value("\"open", false).is_err());
        assert_eq!(value("\"{bad\"", false).unwrap(), Value::from("{bad"));
        assert_eq!(value("bad}", false).unwrap(), Value::from("bad}"));
        assert!(value("{bad", true).is_err());
        assert!(value(r#"{"$dateime":"x"}"#, false).is_err());
        assert_eq!(
            value("[1,2.5,null]", true).unwrap(),
            Value::List(vec![1.into(), 2.5.into(), Value::None])
        );
    }

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_is_counted_outside_strings_and_limited() {
        assert_eq!(json_depth("1"), 0);
        assert_eq!(json_depth(r#"[{"a":[1]},[2]]"#), 3);
        assert_eq!(json_depth(r#"["[[[", "\\"[", {"}": 1}]"#), 2);
        assert_eq!(json_depth(&"[".repeat(500)), 500);
        assert!(value(&nested(MAX_DEPTH), true, "ARG").is_ok());
        for depth in [MAX_DEPTH + 1, 128, 1000] {
            for strict in [false, true] {
                let e = value(&nested(depth), strict, "argument 3").unwrap_err();
                assert_eq!(
                    e.to_string(),
                    format!("argument 3 is nested {depth} levels deep; the limit is 64")
                );
            }
        }
        // Not JSON structure: a string, whatever it contains.
        assert_eq!(value("a[[[[", false, "ARG").unwrap(), Value::from("a[[[["));
    }

    #[test]
    fn argument_arrays() {
        assert_eq!(
            json_args(r#"[1, "two"]"#, "f").unwrap(),
            vec![Value::from(1), Value::from("two")]
        );
        assert!(json_args("{}", "f").is_err());
        let text = format!("[1, {}, {}]", nested(3), nested(200));
        let e = json_args(&text, "f").unwrap_err().to_string();
        assert_eq!(e, "argument 3 is nested 200 levels deep; the limit is 64");
        assert!(json_args(&format!("[{}]", nested(MAX_DEPTH)), "f").is_ok());
    }

    #[test]
    fn durations_and_lifetimes() {
        assert_eq!(seconds("1.5").unwrap(), Duration::from_millis(1500));
        assert!(seconds("-1").is_err() && seconds("NaN").is_err() && seconds("x").is_err());
        assert_eq!(wait("0").unwrap(), Wait(Some(MIN_WAIT)));
        assert_eq!(wait("forever").unwrap(), Wait(None));
        assert_eq!(
            wait("2.5").unwrap(),
            Wait(Some(Duration::from_millis(2500)))
        );
        assert!(wait("-1").is_err() && retry("0").is_err());
        assert_eq!(retry("0.5").unwrap(), Duration::from_millis(500));
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

    #[test]
    fn an_address_without_a_port_takes_11111() {
        assert_eq!(exchange_address("hub").as_deref(), Ok("hub:11111"));
        assert_eq!(exchange_address("hub:4000").as_deref(), Ok("hub:4000"));
        assert_eq!(exchange_address("[::1]").as_deref(), Ok("[::1]:11111"));
        assert_eq!(exchange_address("[::1]:9").as_deref(), Ok("[::1]:9"));
        assert_eq!(
            exchange_address("unix:/tmp/s").as_deref(),
            Ok("unix:/tmp/s")
        );
        assert!(exchange_address("").is_err());
    }

    #[test]
    fn file_modes_are_octal() {
        assert_eq!(file_mode("660"), Ok(0o660));
        assert_eq!(file_mode("0o600"), Ok(0o600));
        assert!(file_mode("999").is_err());
        assert!(file_mode("77777").is_err());
    }
}
