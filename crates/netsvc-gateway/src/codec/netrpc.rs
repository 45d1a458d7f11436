//! NET-RPC (`application/x-rpc` with the `X-RPC-*` headers): the original's own XML payload
//! dialect (`scalar`, `array`, `index`), with no `<?xml …?>` prolog.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use netsvc_proto::value::{Opaque, Value};

use super::xml::{self, Element, Prolog};
use super::{DecodeError, Fault, XmlLimits, escape_attr, escape_xml, float_text};

/// Decodes a request's payload: an `<array>` of the arguments.
pub fn decode_params(body: &[u8], limits: XmlLimits) -> Result<Vec<Value>, DecodeError> {
    let root = xml::parse(body, limits, Prolog::Rejected)?;
    match decode_value(&root)? {
        Value::List(items) if root.name == "array" => Ok(items),
        _ => Err(DecodeError::Structure(format!(
            "root element <{}>, not <array>",
            root.name
        ))),
    }
}

/// Decodes one payload value (a response's body, say).
pub fn decode(body: &[u8], limits: XmlLimits) -> Result<Value, DecodeError> {
    decode_value(&xml::parse(body, limits, Prolog::Rejected)?)
}

fn decode_value(element: &Element) -> Result<Value, DecodeError> {
    match element.name.as_str() {
        "scalar" => scalar(element.attr("type"), &element.text),
        "array" => Ok(Value::List(
            element
                .children
                .iter()
                .map(decode_value)
                .collect::<Result<_, _>>()?,
        )),
        "index" => {
            let mut map = BTreeMap::new();
            for child in &element.children {
                let key = child
                    .attr("name")
                    .ok_or_else(|| DecodeError::Structure("<index> child without a name".into()))?;
                // A repeated key keeps the last value, as the original's decoder does.
                map.insert(key.to_owned(), decode_value(child)?);
            }
            Ok(Value::Map(map))
        }
        other => Err(DecodeError::Structure(format!("unknown element <{other}>"))),
    }
}

fn scalar(kind: Option<&str>, text: &str) -> Result<Value, DecodeError> {
    let Some(kind) = kind else {
        // No type: none, whatever the text.
        return Ok(Value::None);
    };
    let bad = || DecodeError::scalar(kind, text);
    Ok(match kind {
        "xsd:string" => Value::String(text.to_owned()),
        "xsd:byte" | "xsd:short" | "xsd:int" | "xsd:long" | "xsd:integer" | "xsd:unsignedByte"
        | "xsd:unsignedShort" | "xsd:unsignedInt" | "xsd:unsignedLong" => {
            super::xmlrpc::parse_int(text.trim()).ok_or_else(bad)?
        }
        "xsd:float" | "xsd:double" | "xsd:real" => {
            Value::Float(text.trim().parse::<f64>().map_err(|_| bad())?)
        }
        "xsd:boolean" => match text.trim() {
            "true" | "1" => Value::Bool(true),
            "false" | "0" => Value::Bool(false),
            _ => return Err(bad()),
        },
        "xsd:base64Binary" => {
            let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            Value::Bytes(BASE64.decode(clean).map_err(|_| bad())?)
        }
        "xsd:date" => Value::Date(text.trim().parse().map_err(|_| bad())?),
        "xsd:time" => Value::Time(text.trim().parse().map_err(|_| bad())?),
        "xsd:dateTime" => Value::DateTime(text.trim().parse().map_err(|_| bad())?),
        "xsd:duration" => Value::Duration(text.trim().parse().map_err(|_| bad())?),
        other => Value::Opaque(Opaque {
            type_name: other.to_owned(),
            data: text.as_bytes().to_vec(),
        }),
    })
}

/// Encodes a response's payload.
pub fn encode(value: &Value) -> String {
    let mut out = String::new();
    encode_value(value, None, &mut out);
    out
}

/// Encodes a failure: an `<index>` of `error`, `description`, `origin` and `details`.
pub fn encode_failure(fault: &Fault) -> String {
    let mut out = String::from("<index>\n");
    out.push_str(&format!(
        "<scalar name=\"error\" type=\"xsd:int\">{}</scalar>\n",
        fault.error
    ));
    for (name, text) in [
        ("description", &fault.description),
        ("origin", &fault.origin),
        ("details", &fault.details),
    ] {
        out.push_str(&format!("<scalar name=\"{name}\" type=\"xsd:string\">"));
        escape_xml(text, &mut out);
        out.push_str("</scalar>\n");
    }
    out.push_str("</index>\n");
    out
}

fn encode_value(value: &Value, name: Option<&str>, out: &mut String) {
    let open = |out: &mut String, tag: &str, kind: Option<&str>| {
        out.push('<');
        out.push_str(tag);
        if let Some(name) = name {
            out.push_str(" name=\"");
            escape_attr(name, out);
            out.push('"');
        }
        if let Some(kind) = kind {
            out.push_str(" type=\"");
            escape_attr(kind, out);
            out.push('"');
        }
        out.push('>');
    };
    let scalar = |out: &mut String, kind: Option<&str>, text: &str| {
        open(out, "scalar", kind);
        escape_xml(text, out);
        out.push_str("</scalar>\n");
    };
    match value {
        Value::None => scalar(out, None, ""),
        Value::Bool(b) => scalar(out, Some("xsd:boolean"), if *b { "true" } else { "false" }),
        Value::Int(n) => {
            let kind = if n.as_i64().and_then(|n| i32::try_from(n).ok()).is_some() {
                "xsd:int"
            } else {
                "xsd:long"
            };
            scalar(out, Some(kind), &value.to_string());
        }
        Value::Float(f) => scalar(out, Some("xsd:double"), &float_text(*f)),
        Value::String(s) => scalar(out, Some("xsd:string"), s),
        Value::Bytes(b) => {
            let encoded = BASE64.encode(b);
            let mut text = String::with_capacity(encoded.len() + encoded.len() / 76 + 1);
            for line in encoded.as_bytes().chunks(76) {
                text.push_str(&String::from_utf8_lossy(line));
                text.push('\n');
            }
            scalar(out, Some("xsd:base64Binary"), &text);
        }
        Value::Date(d) => scalar(out, Some("xsd:date"), &d.to_string()),
        Value::Time(t) => scalar(out, Some("xsd:time"), &t.to_string()),
        Value::DateTime(dt) => scalar(out, Some("xsd:dateTime"), &dt.to_string()),
        Value::Duration(d) => scalar(out, Some("xsd:duration"), &d.to_string()),
        Value::Opaque(o) => scalar(out, Some(&o.type_name), &String::from_utf8_lossy(&o.data)),
        Value::List(items) => {
            open(out, "array", None);
            out.push('\n');
            for item in items {
                encode_value(item, None, out);
            }
            out.push_str("</array>\n");
        }
        Value::Map(map) => {
            open(out, "index", None);
            out.push('\n');
            for (key, item) in map {
                encode_value(item, Some(key), out);
            }
            out.push_str("</index>\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: XmlLimits = XmlLimits::DEFAULT;

    #[test]
    fn the_observed_echo() {
        let params = decode_params(
            b"<array><scalar type=\"xsd:string\">x</scalar></array>",
            LIMITS,
        )
        .unwrap();
        assert_eq!(params, vec![Value::from("x")]);
        assert_eq!(
            encode(&params[0]),
            "<scalar type=\"xsd:string\">x</scalar>\n"
        );
    }

    #[test]
    fn the_specification_example_round_trips() {
        let body = "<array>\n<scalar type=\"xsd:int\">1</scalar>\n<scalar type=\"xsd:string\">a&lt;b</scalar>\n<scalar></scalar>\n<index>\n<array name=\"k\">\n<scalar type=\"xsd:double\">1.5</scalar>\n</array>\n</index>\n</array>\n";
        let params = decode_params(body.as_bytes(), LIMITS).unwrap();
        assert_eq!(encode(&Value::List(params)), body);
    }

    #[test]
    fn failures_in_the_original_shape() {
        let fault = Fault {
            error: 1,
            description: "Requested".into(),
            origin: "py".into(),
            details: "details".into(),
        };
        assert_eq!(
            encode_failure(&fault),
            "<index>\n<scalar name=\"error\" type=\"xsd:int\">1</scalar>\n<scalar name=\"description\" type=\"xsd:string\">Requested</scalar>\n<scalar name=\"origin\" type=\"xsd:string\">py</scalar>\n<scalar name=\"details\" type=\"xsd:string\">details</scalar>\n</index>\n"
        );
    }

    #[test]
    fn scalars_and_bad_input() {
        let v = decode(b"<index><scalar name='a' type='xsd:boolean'>1</scalar><scalar name='a' type='xsd:long'>12345678901</scalar><scalar name='b' type='my:thing'>raw</scalar><scalar name='c' type='xsd:base64Binary'>aGk=\n</scalar></index>", LIMITS).unwrap();
        let Value::Map(map) = v else {
            panic!("not a map")
        };
        assert_eq!(map["a"], Value::from(12_345_678_901_i64));
        assert!(matches!(&map["b"], Value::Opaque(o) if o.type_name == "my:thing"));
        assert_eq!(map["c"], Value::Bytes(b"hi".to_vec()));
        for bad in [
            &b"<?xml version=\"1.0\"?><array/>"[..],
            b"<scalar type='xsd:string'>x</scalar>",
            b"<array><scalar type='xsd:int'>one</scalar></array>",
            b"<array><index><scalar>x</scalar></index></array>",
            b"<array><bogus/></array>",
            b"<array>",
        ] {
            assert!(
                decode_params(bad, LIMITS).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
