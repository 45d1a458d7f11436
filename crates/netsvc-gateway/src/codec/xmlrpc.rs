//! XML-RPC (`text/xml` on `/service/NAME`): `methodCall` in, `methodResponse` out, in the
//! layout the original gateway writes (one element per line, LF line ends).
//!
//! Values: `int`/`i4`/`i8` → integer, `boolean`, `string` (and a bare `<value>`) → string,
//! `double`, `base64` → bytes, `dateTime.iso8601` → date-time, `struct` → map, `array` →
//! list, `nil` → none. Out, integers that fit 32 bits are `int`, larger ones `i8`; none is
//! `<nil/>`; dates, times, durations and opaque values are `string`s of their text form.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use netsvc_proto::value::{Date, DateTime, Time, Value};

use super::xml::{self, Element, Prolog};
use super::{Call, DecodeError, Fault, XmlLimits, escape_xml, float_text};

/// The origin of the failures this dialect raises itself.
pub const ORIGIN: &str = "netsvc.xmlrpc";

/// Decodes a `methodCall`. A missing `<params>` is an empty parameter list.
pub fn decode_call(body: &[u8], limits: XmlLimits) -> Result<Call, DecodeError> {
    let root = xml::parse(body, limits, Prolog::Allowed)?;
    if root.name != "methodCall" {
        return Err(DecodeError::Structure(format!(
            "root element <{}>, not <methodCall>",
            root.name
        )));
    }
    let method = root
        .child("methodName")
        .ok_or_else(|| DecodeError::Structure("no <methodName>".into()))?
        .text
        .trim()
        .to_owned();
    if method.is_empty() {
        return Err(DecodeError::Structure("empty <methodName>".into()));
    }
    let mut params = Vec::new();
    if let Some(list) = root.child("params") {
        for param in &list.children {
            if param.name != "param" {
                return Err(DecodeError::Structure(format!(
                    "<{}> in <params>",
                    param.name
                )));
            }
            let value = param
                .child("value")
                .ok_or_else(|| DecodeError::Structure("<param> without <value>".into()))?;
            params.push(decode_value(value)?);
        }
    }
    Ok(Call { method, params })
}

fn decode_value(value: &Element) -> Result<Value, DecodeError> {
    if value.name != "value" {
        return Err(DecodeError::Structure(format!(
            "<{}>, not <value>",
            value.name
        )));
    }
    let Some(typed) = value.children.first() else {
        // A bare value is a string.
        return Ok(Value::String(value.text.clone()));
    };
    if value.children.len() > 1 {
        return Err(DecodeError::Structure("<value> with several types".into()));
    }
    let text = typed.text.as_str();
    Ok(match typed.name.as_str() {
        "int" | "i4" | "i8" => {
            parse_int(text.trim()).ok_or_else(|| DecodeError::scalar("int", text))?
        }
        "boolean" => match text.trim() {
            "1" => Value::Bool(true),
            "0" => Value::Bool(false),
            _ => return Err(DecodeError::scalar("boolean", text)),
        },
        "string" => Value::String(text.to_owned()),
        "double" => Value::Float(
            text.trim()
                .parse::<f64>()
                .map_err(|_| DecodeError::scalar("double", text))?,
        ),
        "base64" => {
            let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            Value::Bytes(
                BASE64
                    .decode(clean)
                    .map_err(|_| DecodeError::scalar("base64", text))?,
            )
        }
        "dateTime.iso8601" => Value::DateTime(
            parse_iso8601(text.trim())
                .ok_or_else(|| DecodeError::scalar("dateTime.iso8601", text))?,
        ),
        "nil" => Value::None,
        "struct" => {
            let mut map = BTreeMap::new();
            for member in &typed.children {
                if member.name != "member" {
                    return Err(DecodeError::Structure(format!(
                        "<{}> in <struct>",
                        member.name
                    )));
                }
                let name = member
                    .child("name")
                    .ok_or_else(|| DecodeError::Structure("<member> without <name>".into()))?;
                let inner = member
                    .child("value")
                    .ok_or_else(|| DecodeError::Structure("<member> without <value>".into()))?;
                map.insert(name.text.clone(), decode_value(inner)?);
            }
            Value::Map(map)
        }
        "array" => {
            let data = typed
                .child("data")
                .ok_or_else(|| DecodeError::Structure("<array> without <data>".into()))?;
            Value::List(
                data.children
                    .iter()
                    .map(decode_value)
                    .collect::<Result<_, _>>()?,
            )
        }
        other => return Err(DecodeError::Structure(format!("unknown type <{other}>"))),
    })
}

pub(crate) fn parse_int(text: &str) -> Option<Value> {
    if let Ok(n) = text.parse::<i64>() {
        return Some(Value::from(n));
    }
    text.strip_prefix('+')
        .unwrap_or(text)
        .parse::<u64>()
        .ok()
        .map(Value::from)
}

/// `YYYYMMDDThh:mm:ss` (also with dashes in the date, as some clients write it).
fn parse_iso8601(text: &str) -> Option<DateTime> {
    let (date, time) = text.split_once('T')?;
    let digits: String = date.chars().filter(|c| *c != '-').collect();
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year = digits.get(0..4)?.parse().ok()?;
    let month = digits.get(4..6)?.parse().ok()?;
    let day = digits.get(6..8)?.parse().ok()?;
    let time: Time = time.parse().ok()?;
    DateTime::new(Date::new(year, month, day).ok()?, time, None).ok()
}

/// A `methodCall` (what a client sends), in the same layout as the responses.
pub fn encode_call(call: &Call) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?>\n<methodCall>\n<methodName>");
    escape_xml(&call.method, &mut out);
    out.push_str("</methodName>\n<params>\n");
    for param in &call.params {
        out.push_str("<param>\n");
        encode_value(param, &mut out);
        out.push_str("\n</param>\n");
    }
    out.push_str("</params>\n</methodCall>\n");
    out
}

/// The response to a successful call.
pub fn encode_response(value: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?>\n<methodResponse>\n<params>\n<param>\n");
    encode_value(value, &mut out);
    out.push_str("\n</param>\n</params>\n</methodResponse>\n");
    out
}

/// The response to a failed call: `faultCode` is the error, `faultString` is
/// `origin -- description`, then a blank line and the details when there are any.
pub fn encode_fault(fault: &Fault) -> String {
    let mut text = if fault.origin.is_empty() {
        fault.description.clone()
    } else {
        format!("{} -- {}", fault.origin, fault.description)
    };
    if !fault.details.is_empty() {
        text.push_str("\n\n");
        text.push_str(&fault.details);
    }
    let mut out = format!(
        "<?xml version=\"1.0\"?>\n<methodResponse>\n<fault>\n<value>\n<struct>\n<member>\n<name>faultCode</name>\n<value><int>{}</int></value>\n</member>\n<member>\n<name>faultString</name>\n<value>",
        fault.error
    );
    escape_xml(&text, &mut out);
    out.push_str("</value>\n</member>\n</struct>\n</value>\n</fault>\n</methodResponse>\n");
    out
}

fn encode_value(value: &Value, out: &mut String) {
    out.push_str("<value>");
    match value {
        Value::None => out.push_str("<nil/>"),
        Value::Bool(b) => {
            out.push_str(if *b {
                "<boolean>1</boolean>"
            } else {
                "<boolean>0</boolean>"
            });
        }
        Value::Int(n) => match n.as_i64().and_then(|n| i32::try_from(n).ok()) {
            Some(small) => out.push_str(&format!("<int>{small}</int>")),
            None => out.push_str(&format!("<i8>{}</i8>", Value::Int(*n))),
        },
        Value::Float(f) => out.push_str(&format!("<double>{}</double>", float_text(*f))),
        Value::String(s) => string(s, out),
        Value::Bytes(b) => out.push_str(&format!("<base64>{}</base64>", BASE64.encode(b))),
        Value::List(items) => {
            out.push_str("<array>\n<data>\n");
            for item in items {
                encode_value(item, out);
                out.push('\n');
            }
            out.push_str("</data>\n</array>");
        }
        Value::Map(map) => {
            out.push_str("<struct>\n");
            for (key, item) in map {
                out.push_str("<member>\n<name>");
                escape_xml(key, out);
                out.push_str("</name>\n");
                encode_value(item, out);
                out.push_str("\n</member>\n");
            }
            out.push_str("</struct>");
        }
        Value::DateTime(dt) if dt.offset_seconds().is_none() => {
            let (d, t) = (dt.date(), dt.time());
            if (0..=9999).contains(&d.year()) {
                out.push_str(&format!(
                    "<dateTime.iso8601>{:04}{:02}{:02}T{:02}:{:02}:{:02}</dateTime.iso8601>",
                    d.year(),
                    d.month(),
                    d.day(),
                    t.hour(),
                    t.minute(),
                    t.second()
                ));
            } else {
                string(&dt.to_string(), out);
            }
        }
        Value::DateTime(dt) => string(&dt.to_string(), out),
        Value::Date(d) => string(&d.to_string(), out),
        Value::Time(t) => string(&t.to_string(), out),
        Value::Duration(d) => string(&d.to_string(), out),
        Value::Opaque(o) => string(&String::from_utf8_lossy(&o.data), out),
    }
    out.push_str("</value>");
}

fn string(s: &str, out: &mut String) {
    out.push_str("<string>");
    escape_xml(s, out);
    out.push_str("</string>");
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: XmlLimits = XmlLimits::DEFAULT;

    #[test]
    fn the_observed_echo_round_trips() {
        let body = "<?xml version=\"1.0\"?><methodCall><methodName>echo</methodName><params><param><value><string>x</string></value></param></params></methodCall>";
        let call = decode_call(body.as_bytes(), LIMITS).unwrap();
        assert_eq!(call.method, "echo");
        assert_eq!(call.params, vec![Value::from("x")]);
        assert_eq!(
            encode_response(&call.params[0]),
            "<?xml version=\"1.0\"?>\n<methodResponse>\n<params>\n<param>\n<value><string>x</string></value>\n</param>\n</params>\n</methodResponse>\n"
        );
    }

    #[test]
    fn structs_arrays_and_bare_values() {
        let body = "<methodCall><methodName>echo</methodName><params><param><value><struct><member><name>i</name><value><int>42</int></value></member><member><name>d</name><value><double>1.5</double></value></member><member><name>b</name><value><boolean>1</boolean></value></member><member><name>a</name><value><array><data><value>bare</value><value><i4>-1</i4></value></data></array></value></member></struct></value></param></params></methodCall>";
        let call = decode_call(body.as_bytes(), LIMITS).unwrap();
        let out = encode_response(&call.params[0]);
        assert_eq!(
            out,
            "<?xml version=\"1.0\"?>\n<methodResponse>\n<params>\n<param>\n<value><struct>\n<member>\n<name>a</name>\n<value><array>\n<data>\n<value><string>bare</string></value>\n<value><int>-1</int></value>\n</data>\n</array></value>\n</member>\n<member>\n<name>b</name>\n<value><boolean>1</boolean></value>\n</member>\n<member>\n<name>d</name>\n<value><double>1.5</double></value>\n</member>\n<member>\n<name>i</name>\n<value><int>42</int></value>\n</member>\n</struct></value>\n</param>\n</params>\n</methodResponse>\n"
        );
    }

    #[test]
    fn faults_in_the_original_shape() {
        let fault = Fault {
            error: 1,
            description: "Requested".into(),
            origin: "py".into(),
            details: "details".into(),
        };
        assert_eq!(
            encode_fault(&fault),
            "<?xml version=\"1.0\"?>\n<methodResponse>\n<fault>\n<value>\n<struct>\n<member>\n<name>faultCode</name>\n<value><int>1</int></value>\n</member>\n<member>\n<name>faultString</name>\n<value>py -- Requested\n\ndetails</value>\n</member>\n</struct>\n</value>\n</fault>\n</methodResponse>\n"
        );
        let bare = Fault::decoding(ORIGIN);
        assert!(
            encode_fault(&bare).contains("<value>netsvc.xmlrpc -- Request Decoding Error</value>")
        );
    }

    #[test]
    fn missing_params_and_bad_bodies() {
        let call = decode_call(
            b"<methodCall><methodName>nosuch</methodName></methodCall>",
            LIMITS,
        )
        .unwrap();
        assert!(call.params.is_empty());
        for bad in [
            &b"not xml"[..],
            b"<methodCall></methodCall>",
            b"<other/>",
            b"<methodCall><methodName>m</methodName><params><param><value><int>x</int></value></param></params></methodCall>",
            b"<methodCall><methodName>m</methodName><params><param><value><base64>!!</base64></value></param></params></methodCall>",
        ] {
            assert!(decode_call(bad, LIMITS).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn scalars_decode_to_their_types() {
        let body = "<methodCall><methodName>m</methodName><params>\
            <param><value><i8>12345678901</i8></value></param>\
            <param><value><base64>aGk=</base64></value></param>\
            <param><value><dateTime.iso8601>20261202T16:40:00</dateTime.iso8601></value></param>\
            <param><value><nil/></value></param>\
            <param><value><string>a&lt;b</string></value></param></params></methodCall>";
        let call = decode_call(body.as_bytes(), LIMITS).unwrap();
        assert_eq!(call.params[0], Value::from(12_345_678_901_i64));
        assert_eq!(call.params[1], Value::Bytes(b"hi".to_vec()));
        assert!(matches!(call.params[2], Value::DateTime(_)));
        assert_eq!(call.params[3], Value::None);
        assert_eq!(call.params[4], Value::from("a<b"));
        let out = encode_response(&Value::List(call.params));
        assert!(out.contains("<value><i8>12345678901</i8></value>"), "{out}");
        assert!(
            out.contains("<dateTime.iso8601>20261202T16:40:00</dateTime.iso8601>"),
            "{out}"
        );
        assert!(
            out.contains("<value><string>a&lt;b</string></value>"),
            "{out}"
        );
    }
}
